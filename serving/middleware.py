"""Pure ASGI middleware: the request-size limits (no buffering, no reading of huge bodies) and
the security headers of every response.

More than ``max_headers`` request headers, or more than ``max_header_bytes`` of them, is a 431
(headers still arriving are bounded earlier, by the server's parser: :mod:`serving.server`).

A declared ``Content-Length`` over the limit is refused with 413 before a byte of the body is
read. Bodies without one (chunked) are counted as they stream in: the moment the count passes
the limit, the read raises :class:`BodyTooLarge` (an ``HTTPException`` 413), so the handler
never sees the body and at most one chunk beyond the limit is held in memory.
"""

from __future__ import annotations

import json

from fastapi import HTTPException, status
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(
            status.HTTP_413_CONTENT_TOO_LARGE,
            f"request body larger than {limit} bytes (LEADSCORE_MAX_BODY_BYTES / "
            "params serving.max_body_bytes)",
        )


class BodyLimitMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        max_headers: int | None = None,
        max_header_bytes: int | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_headers = max_headers
        self.max_header_bytes = max_header_bytes

    async def _refuse(self, send: Send, code: int, detail: str) -> None:
        body = json.dumps({"detail": detail}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": code,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        headers = scope.get("headers", ())
        if self.max_headers is not None and len(headers) > self.max_headers:
            await self._refuse(
                send,
                status.HTTP_431_REQUEST_HEADER_FIELDS_TOO_LARGE,
                f"more than {self.max_headers} request headers (params serving.max_headers)",
            )
            return
        if self.max_header_bytes is not None and (
            sum(len(name) + len(value) for name, value in headers) > self.max_header_bytes
        ):
            await self._refuse(
                send,
                status.HTTP_431_REQUEST_HEADER_FIELDS_TOO_LARGE,
                f"request headers larger than {self.max_header_bytes} bytes "
                "(params serving.max_header_bytes)",
            )
            return
        for name, value in headers:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await self._refuse(send, status.HTTP_400_BAD_REQUEST, "invalid Content-Length")
                    return
                if declared > limit:
                    await self._refuse(
                        send, status.HTTP_413_CONTENT_TOO_LARGE, BodyTooLarge(limit).detail
                    )
                    return
                break
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, limited, send)


SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)
CONTENT_SECURITY_POLICY = (
    b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    b"connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    b"form-action 'self'"
)
"""The dashboard loads only its own scripts, styles and data (no CDN, no inline code)."""
DOCS_SECURITY_POLICY = (
    b"default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    b"img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    b"frame-ancestors 'none'"
)
"""Swagger UI's page starts from an inline script; its assets are local (no CDN allowed)."""
DOCS_PAGES: tuple[str, ...] = ("/docs",)


class SecurityHeadersMiddleware:
    """Adds ``X-Content-Type-Options``, ``X-Frame-Options`` and ``Referrer-Policy`` to every
    response, and a ``Content-Security-Policy``: the dashboard's, or the docs page's."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))
        extra = list(SECURITY_HEADERS)
        policy = DOCS_SECURITY_POLICY if path in DOCS_PAGES else CONTENT_SECURITY_POLICY
        extra.append((b"content-security-policy", policy))

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = [
                    *message.get("headers", []),
                    *((name, value) for name, value in extra if name not in present),
                ]
            await send(message)

        await self.app(scope, receive, with_headers)
