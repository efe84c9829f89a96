"""The one error type that reaches users as a single line, never as a traceback."""

from __future__ import annotations


class UserError(Exception):
    """Bad input or configuration: the message names the file, column, rows and rule.

    The CLI prints ``str(error)`` on one line and exits non-zero; anything else that escapes
    is a bug in leadscore and keeps its traceback.
    """
