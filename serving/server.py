"""The HTTP server around the app: uvicorn with limits per connection, and the supervisor of
several workers.

uvicorn's defaults leave a server open to anyone who can connect, key or no key: a connection
that never finishes its headers is kept for ever (uvicorn times out only idle keep-alive
connections), header size is h11's 16 KiB only on the h11 parser (httptools ignores it), and the
connection cap answers 503 only once a request is parsed. :class:`GuardedH11Protocol` is
uvicorn's h11 protocol with:

- a deadline for receiving each request (headers and body: ``header_timeout_seconds``), after
  which the connection gets a 408 (or is closed if the app has started answering);
- a cap on open connections per worker (``max_connections``): one more is closed at once;
- a header size limit while headers arrive (``max_header_bytes``: h11 refuses a request whose
  unfinished headers grow beyond it with a 400, so an endless header costs no memory); complete
  headers beyond it, or more than ``max_headers`` of them, are a 431 from
  :class:`serving.middleware.BodyLimitMiddleware`.

:class:`Supervisor` is uvicorn's multi-process supervisor with SIGHUP turned from "restart every
worker" (which waits for each new worker within a health-check timeout and aborts otherwise)
into a coordinated reload (:mod:`serving.coordination`): every worker swaps to the same pinned
model in place, without restarting.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import h11
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState
from uvicorn.supervisors.multiprocess import Multiprocess

from serving.coordination import ReloadBoard

logger = logging.getLogger(__name__)

GUARD_ATTRIBUTE = "leadscore_guard"
"""Where the :class:`ConnectionGuard` travels on uvicorn's ``Config`` (pickled into each worker)."""


@dataclass(frozen=True)
class ConnectionGuard:
    header_timeout_seconds: float = 10.0
    max_connections: int = 256


def _closing_response(status: int, text: str) -> list[bytes]:
    reason = {408: b"Request Timeout", 503: b"Service Unavailable"}[status]
    body = text.encode("ascii")
    head = (
        f"HTTP/1.1 {status} ".encode()
        + reason
        + b"\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
        + f"content-length: {len(body)}\r\n\r\n".encode()
    )
    return [head, body]


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline per request and a connection cap."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.guard: ConnectionGuard = getattr(config, GUARD_ATTRIBUTE, ConnectionGuard())
        self.receive_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.guard.max_connections:
            self.logger.warning(
                "connection refused: %d open (max_connections)", len(self.connections) - 1
            )
            for part in _closing_response(503, "too many connections"):
                transport.write(part)
            transport.close()
            return
        self._arm()

    def _arm(self) -> None:
        self._disarm()
        self.receive_deadline = self.loop.call_later(
            self.guard.header_timeout_seconds, self._receive_timed_out
        )

    def _disarm(self) -> None:
        if self.receive_deadline is not None:
            self.receive_deadline.cancel()
            self.receive_deadline = None

    def data_received(self, data: bytes) -> None:
        if self.receive_deadline is None and self.conn.their_state is h11.IDLE:
            self._arm()  # the next request of a keep-alive connection begins
        super().data_received(data)
        if self.conn.their_state not in (h11.IDLE, h11.SEND_BODY):
            self._disarm()  # received completely (or the connection is done)

    def _receive_timed_out(self) -> None:
        self.receive_deadline = None
        if self.transport.is_closing():
            return
        if self.conn.their_state not in (h11.IDLE, h11.SEND_BODY):
            return
        if self.conn.our_state is h11.IDLE and (self.cycle is None or self.cycle.response_complete):
            # nothing answered yet on this request: say why before closing
            for part in _closing_response(408, "request not received in time"):
                self.transport.write(part)
        self.logger.info("connection closed: request not received in time")
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def log_config(level: str) -> dict[str, Any]:
    """One line per record from every process, the worker's pid in it (uvicorn's own config
    configures only its loggers: the app's records were lost in the workers)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "plain": {"format": "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"}
        },
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "plain",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["stderr"], "level": level.upper()},
        "loggers": {"uvicorn.error": {"level": "INFO"}},
    }


def pin(uri: str, tracking_uri: str | None) -> str:
    """The configured model as exactly one version (an alias resolved now)."""
    if not uri.startswith("models:/"):
        return uri
    from models.packaging.tracking import locate

    return locate(uri, tracking_uri).uri


class Supervisor(Multiprocess):
    """uvicorn's supervisor of N workers; SIGHUP = every worker reloads the configured model
    (resolved once, here) in place."""

    def __init__(
        self,
        config: Config,
        sockets: list[Any],
        board: ReloadBoard,
        model_uri: str,
        tracking_uri: str | None,
    ) -> None:
        super().__init__(config, sockets)
        self.board = board
        self.model_uri = model_uri
        self.tracking_uri = tracking_uri

    def handle_hup(self) -> None:
        logger.info("SIGHUP: every worker reloads %s", self.model_uri)
        try:
            uri = pin(self.model_uri, self.tracking_uri)
        except LookupError as error:
            logger.error("SIGHUP: not reloaded: %s", error)
            return
        self.board.publish(uri)
