"""Feature columns whose *names* sound like something sales writes after the outcome.

CRM exports mix what was known about a lead when it arrived with what sales wrote after talking
to it (a ``Tags`` column, a ``Lead Quality`` set by the rep, a ``Lost Reason``). Those columns
predict the outcome because they are written from it: a model trained on them scores well and
is useless on new leads. A name is no proof either way, so this is a warning, not a refusal:
the guard in :mod:`models.reports.leakage` measures what each column actually does.

A name matches when one of its words (split on anything but letters and digits, and on
camelCase) is a vocabulary word or that word with a plain English ending (``tags``, ``scored``,
``closing``): whole words only, so ``operating_revenue`` does not match ``rating``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from features.params import POST_OUTCOME_WORDS

logger = logging.getLogger(__name__)

ENDINGS: tuple[str, ...] = ("", "s", "es", "d", "ed", "ing")

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_SEPARATORS = re.compile(r"[^A-Za-z0-9]+")


@dataclass(frozen=True)
class NameWarning:
    column: str
    words: tuple[str, ...]
    """The vocabulary words the column's name matched."""

    @property
    def text(self) -> str:
        quoted = ", ".join(f"'{w}'" for w in self.words)
        return (
            f"column {self.column!r} is used as a feature but its name contains {quoted}, "
            "words of columns written after the outcome; declare it `post_outcome` in the "
            "mapping if sales fills it after talking to the lead"
        )

    def as_dict(self) -> dict[str, object]:
        return {"column": self.column, "words": list(self.words), "text": self.text}


def name_words(name: str) -> list[str]:
    """The lower-case words of a column name (``LeadQuality``, ``lead_quality`` and
    ``Lead Quality`` all give ``["lead", "quality"]``)."""
    parts = _SEPARATORS.split(_CAMEL.sub(" ", name))
    return [part.lower() for part in parts if part]


def matched_words(name: str, vocabulary: Iterable[str]) -> tuple[str, ...]:
    """The vocabulary words ``name`` contains as a whole word (with a plain ending)."""
    words = set(name_words(name))
    found = []
    for entry in vocabulary:
        # A vocabulary entry may itself be several words ("lead source"): all must appear.
        wanted = name_words(entry)
        if wanted and all(any(w + end in words for end in ENDINGS) for w in wanted):
            found.append(entry)
    return tuple(found)


def suspicious_names(
    columns: Sequence[str],
    post_outcome: Sequence[str] = (),
    vocabulary: Sequence[str] = POST_OUTCOME_WORDS,
) -> list[NameWarning]:
    """Feature ``columns`` whose names match ``vocabulary`` and that are not declared
    ``post_outcome`` (declared ones are already excluded from the features)."""
    declared = set(post_outcome)
    out = []
    for column in columns:
        if column in declared:
            continue
        words = matched_words(column, vocabulary)
        if words:
            out.append(NameWarning(column, words))
    return out


def warn_suspicious_names(
    columns: Sequence[str],
    post_outcome: Sequence[str] = (),
    vocabulary: Sequence[str] = POST_OUTCOME_WORDS,
    where: str = "",
) -> list[NameWarning]:
    """:func:`suspicious_names`, each one logged as a warning (prefixed with ``where``, e.g. the
    export file) so the console says it at import."""
    warnings = suspicious_names(columns, post_outcome, vocabulary)
    prefix = f"{where}: " if where else ""
    for warning in warnings:
        logger.warning("possible leakage: %s%s", prefix, warning.text)
    return warnings
