"""The admin HTTP server (``--admin-port``): ``/healthz``, ``/version`` and ``/metrics``.

It runs on the plugin's event loop, so it answers only while the loop does:
a loop stalled by a blocking handler shows up as a health check timing out.
It listens on 127.0.0.1 only, like the gRPC server.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import typing as t

from . import metrics

log = logging.getLogger("pipeplug")

#: () -> list of problems; empty means healthy
HealthCheck = t.Callable[[], t.List[str]]

_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 400: "Bad Request", 503: "Service Unavailable"}
_MAX_HEADER_LINES = 100
_READ_TIMEOUT = 10.0


class AdminServer:
    """Serves plain HTTP/1.1 GETs; one request per connection."""

    def __init__(self, port: int, *, health: HealthCheck, version: t.Mapping[str, str], host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port
        self.health = health
        self.version = dict(version)
        self._server: asyncio.base_events.Server | None = None
        self._loading: asyncio.Future[t.Any] | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("admin server on http://%s:%d (/healthz, /version, /metrics)", self.host, self.port)
        # prometheus-client takes tens of ms to import: load it in a worker thread now, so that
        # neither the start nor the first scrape waits for it on the event loop.
        self._loading = asyncio.get_running_loop().run_in_executor(None, importlib.import_module, "prometheus_client")

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            status, content_type, body = await asyncio.wait_for(self._respond(reader), _READ_TIMEOUT)
        except (asyncio.TimeoutError, ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            status, content_type, body = 400, "text/plain; charset=utf-8", b"bad request\n"
        head = (
            f"HTTP/1.1 {status} {_REASONS.get(status, '')}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        try:
            writer.write(head.encode("latin-1") + body)
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def _respond(self, reader: asyncio.StreamReader) -> tuple[int, str, bytes]:
        request_line = (await reader.readline()).decode("latin-1").split()
        for _ in range(_MAX_HEADER_LINES):
            if (await reader.readline()) in (b"\r\n", b"\n", b""):
                break
        if len(request_line) < 2:
            return 400, "text/plain; charset=utf-8", b"bad request\n"
        method, path = request_line[0], request_line[1].split("?", 1)[0]
        if method not in ("GET", "HEAD"):
            return 405, "text/plain; charset=utf-8", b"only GET\n"
        if path == "/healthz":
            problems = self.health()
            if problems:
                return 503, "text/plain; charset=utf-8", ("unhealthy:\n" + "".join(f"- {p}\n" for p in problems)).encode()
            return 200, "text/plain; charset=utf-8", b"ok\n"
        if path == "/version":
            return 200, "application/json", json.dumps(self.version).encode() + b"\n"
        if path == "/metrics":
            if self._loading is not None:
                await self._loading  # prometheus-client, still loading in its thread right after start
            body, content_type = metrics.render()
            return 200, content_type, body
        return 404, "text/plain; charset=utf-8", b"not found; try /healthz, /version or /metrics\n"
