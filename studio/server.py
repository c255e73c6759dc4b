"""`gristmill serve`: the server process.

Until the studio's pages arrive this serves a plain status page that says what is
running (data directory, warm kernels per environment) and `GET /api/health`. It owns
one `Services` for its lifetime and shuts down cleanly on SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import asyncio
import html
import json
import signal
import sys
import time
from typing import Any

import tornado.httpserver
import tornado.netutil
import tornado.web

from studio.services import Services
from studio.settings import Settings


class _Base(tornado.web.RequestHandler):
    def initialize(self, services: Services, started: float) -> None:
        self.services = services
        self.started = started

    def set_default_headers(self) -> None:
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "same-origin")
        self.set_header("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'")

    def status(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "uptime_s": round(time.monotonic() - self.started, 1),
            "data": str(self.services.settings.data),
            "kernels": self.services.pool.stats(),
            "flow_runs_in_progress": self.services.dispatcher.busy
            if self.services.dispatcher
            else 0,
        }


class HealthHandler(_Base):
    def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.write(json.dumps(self.status()))


class StatusPage(_Base):
    def get(self) -> None:
        status = self.status()
        rows = "".join(
            f"<tr><td>{html.escape(env)}</td><td>{s['idle']}</td><td>{s['leased']}</td><td>{s['starting']}</td></tr>"
            for env, s in status["kernels"].items()
        )
        self.write(
            "<!doctype html><html><head><meta charset='utf-8'><title>Gristmill</title>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'></head>"
            "<body style='font-family: system-ui, sans-serif; max-width: 40rem; margin: 2rem auto'>"
            "<h1>Gristmill is running</h1>"
            f"<p>Data directory: <code>{html.escape(status['data'])}</code></p>"
            "<h2>Warm kernels</h2><table><tr><th>environment</th><th>idle</th><th>busy</th><th>starting</th></tr>"
            f"{rows}</table>"
            "<p>The studio pages (editor, forms, runs) are not built yet; run scripts with "
            "<code>gristmill run FILE -a NAME=VALUE</code>. Health: <a href='/api/health'>/api/health</a>.</p>"
            "</body></html>"
        )


def make_app(services: Services, started: float) -> tornado.web.Application:
    context = {"services": services, "started": started}
    return tornado.web.Application(
        [(r"/", StatusPage, context), (r"/api/health", HealthHandler, context)]
    )


async def serve(settings: Settings) -> int:
    """Run the server until SIGTERM or SIGINT; returns the exit code."""
    settings.data.mkdir(parents=True, exist_ok=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    # flows=True: the server owns the run store, so interrupted runs resume here.
    async with Services(settings, flows=True) as services:
        services.pool.warm(services.environments.default())
        sockets = tornado.netutil.bind_sockets(settings.port, address=settings.host)
        port = sockets[0].getsockname()[1]  # the real one when --port 0 asked for any free port
        server = tornado.httpserver.HTTPServer(make_app(services, time.monotonic()))
        server.add_sockets(sockets)
        print(
            f"Gristmill serving on http://{settings.host}:{port}/ (data: {settings.data})",
            file=sys.stderr,
            flush=True,
        )
        await stop.wait()
        print("Gristmill stopping", file=sys.stderr, flush=True)
        server.stop()
        await server.close_all_connections()
    return 0
