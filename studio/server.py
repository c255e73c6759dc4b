"""`gristmill serve`: one process serving the studio pages (Panel on Bokeh's Tornado app),
the REST API and `GET /api/health`, over one `Services`.

Security choices, in one place:
- the websocket accepts only the origin the server is served on (never `*`);
- Bokeh session ids are signed with a key kept in `<data>/keys/sessions.key` (0600);
- every response (Bokeh's and Panel's handlers included, through an output transform)
  carries a CSP, nosniff and a same-origin referrer policy;
- our cookies never enter the session token Bokeh embeds in the page (see
  `studio.pages.signin`); tracebacks are never served (Tornado's `serve_traceback` off).

Panel takes ~2 s to import, so it is imported here only inside `serve()`.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import sys
from pathlib import Path
from typing import Any

import tornado.web

from studio.services import Services
from studio.settings import Settings

SESSION_KEY_FILE = Path("keys") / "sessions.key"

# Bokeh renders its documents with inline <script> blocks and compiles some model code at
# run time, so scripts need 'unsafe-inline' and 'unsafe-eval' (checked in Chromium: the
# pages stay blank without them); Panel's ES-module components load from blob: URLs it
# creates itself; Bokeh also injects inline styles. Everything else is 'self'.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self' 'unsafe-inline' 'unsafe-eval' blob:",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: blob:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


class SecurityHeaders(tornado.web.OutputTransform):
    """Adds the security headers to every response that did not set its own (an embed
    route sets its own `frame-ancestors`)."""

    def transform_first_chunk(
        self, status_code: int, headers: Any, chunk: bytes, finishing: bool
    ) -> tuple[int, Any, bytes]:
        for name, value in SECURITY_HEADERS.items():
            if name not in headers:
                headers[name] = value
        return status_code, headers, chunk


def session_secret(data_dir: Path) -> bytes:
    """The key that signs Bokeh session ids: created once (0600), then read back."""
    path = data_dir / SESSION_KEY_FILE
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = path.read_bytes().strip()
        if len(key) < 32:
            raise ValueError(
                f"{path}: the session key is {len(key)} bytes; expected at least 32 "
                "(delete the file to have a new one made)"
            ) from None
        return key
    key = secrets.token_urlsafe(48).encode()
    with os.fdopen(fd, "wb") as out:
        out.write(key)
    return key


def websocket_origins(host: str, port: int) -> list[str]:
    """The exact origins a browser shows for this server (loopback has two spellings)."""
    loopback = {"127.0.0.1", "localhost", "::1"}
    names = {host} | ({"127.0.0.1", "localhost"} if host in loopback else set())
    return sorted(f"{name}:{port}" for name in names)


def _api_routes(services: Services) -> list[Any]:
    """The REST API's routes, once `studio.api` provides them."""
    try:
        from studio.api import api_routes
    except ImportError as exc:
        if exc.name is not None and not exc.name.startswith("studio.api"):
            raise
        return []
    return list(api_routes(services))


def build_server(services: Services, settings: Settings) -> Any:
    """The Panel/Bokeh server on the running loop, listening but not started."""
    from panel.io.application import build_applications
    from panel.io.server import get_server

    from studio.pages import page_functions
    from studio.pages.oauth import oauth_routes
    from studio.pages.signin import SESSION_COOKIE, PageAuth, UserHandler, signin_routes

    apps = build_applications(page_functions(services), title="Gristmill")  # type: ignore[arg-type]
    for app in apps.values():
        app.add(UserHandler(services))
    extra = [
        *signin_routes(services),
        *oauth_routes(services),
        *_api_routes(services),
    ]
    server = get_server(
        apps,  # type: ignore[arg-type]
        port=settings.port,
        address=settings.host,
        start=False,
        show=False,
        title="Gristmill",
        extra_patterns=extra,
        auth_provider=PageAuth(services),
        sign_sessions=True,
        secret_key=session_secret(settings.data),
        generate_session_ids=True,
        # Our cookies and credentials stay out of the token Bokeh embeds in the page.
        exclude_cookies=[SESSION_COOKIE, "_xsrf"],
        exclude_headers=["Cookie", "Authorization"],
        cookie_secret=secrets.token_urlsafe(32),
    )
    tornado_app = server._tornado
    # Bokeh learns the real port only when it binds (port 0 = any free one), after it
    # has built its origin allow-list; replace that list with the exact origins.
    tornado_app._websocket_origins = set(websocket_origins(settings.host, server.port or 0))
    tornado_app.transforms.append(SecurityHeaders)
    tornado_app.settings["serve_traceback"] = False
    return server


async def serve(settings: Settings) -> int:
    """Run the server until SIGTERM or SIGINT; returns the exit code."""
    settings.data.mkdir(parents=True, exist_ok=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # flows=True: the server owns the run store, so interrupted runs resume here.
    async with Services(settings, flows=True, scheduler=True) as services:
        services.pool.warm(services.environments.default())
        server = build_server(services, settings)
        # After get_server: Panel installs its own SIGINT handler that stops the loop.
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        server.start()
        services.set_public_url(f"http://{settings.host}:{server.port}")
        print(
            f"Gristmill serving on http://{settings.host}:{server.port}/ (data: {settings.data})",
            file=sys.stderr,
            flush=True,
        )
        await stop.wait()
        print("Gristmill stopping", file=sys.stderr, flush=True)
        server.stop()
        await server._http.close_all_connections()
    return 0
