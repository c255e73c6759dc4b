"""A real API server for a test module: Services (kernels, DuckDB store, workspace) and a
Tornado HTTPServer on 127.0.0.1, both on the portal's loop; tests talk plain HTTP.

The workspace is seeded with one user per role, a folder `team` with rights, a script
in it, and private scripts of two users, so permission tests have something to refuse.
"""

from __future__ import annotations

import json
import textwrap
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import tornado.httpserver
import tornado.netutil
import tornado.web

from studio.api import api_routes
from studio.services import Services
from studio.settings import Settings
from tests.portal import Portal

ADMIN_TOKEN = "gm_test_admin_token_0123456789abcdefghijklmnop"
ROLES = ("admin", "dev", "op", "viewer", "anon")

HELLO = textwrap.dedent(
    """
    def main(name: str = "world", times: int = 1):
        print(f"hello {name}")
        return {"greeting": f"hello {name}", "times": times}
    """
)
BOOM = "def main():\n    raise ValueError('boom')\n"
APPROVAL_FLOW = textwrap.dedent(
    """
    summary: approve then greet
    schema: {type: object, properties: {who: {type: string, default: x}}}
    steps:
      - id: ask
        approval:
          form: {type: object, properties: {note: {type: string}}}
      - id: greet
        python: "def main(who: str, note: str): return f'{who}:{note}'"
        args: {who: "${{ flow_input.who }}", note: "${{ results.ask.note }}"}
    """
)


@dataclass
class Response:
    status: int
    body: Any
    headers: dict[str, str]


@dataclass
class Api:
    """The server and one token per role; `call` makes one HTTP request."""

    base: str
    portal: Portal
    services: Services
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def workspace(self) -> Any:
        return self.services.workspace

    def call(
        self,
        method: str,
        url: str,
        body: Any = None,
        *,
        role: str = "admin",
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        request = urllib.request.Request(self.base + url, data=data, method=method)
        if data is not None and raw is None:
            request.add_header("Content-Type", "application/json")
        token = self.tokens.get(role)
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                status, payload, got = response.status, response.read(), response.headers
        except urllib.error.HTTPError as error:
            status, payload, got = error.code, error.read(), error.headers
        text = payload.decode()
        try:
            parsed = json.loads(text) if text else None
        except ValueError:
            parsed = text
        return Response(status, parsed, {k.lower(): v for k, v in got.items()})


def start_api(portal: Portal, data: Path, **settings: Any) -> tuple[Api, Any]:
    services = Services(
        Settings(
            data=data,
            pool_size=1,
            admin_token=ADMIN_TOKEN,
            admin_password="password-admin",
            **settings,
        ),
        flows=True,
    )

    async def start() -> tuple[int, tornado.httpserver.HTTPServer]:
        await services.__aenter__()
        env = services.environments.default()
        services.pool.warm(env)
        await services.pool.wait_warm(env, timeout=120)
        app = tornado.web.Application(api_routes(services))
        sockets = tornado.netutil.bind_sockets(0, address="127.0.0.1")
        server = tornado.httpserver.HTTPServer(app)
        server.add_sockets(sockets)
        return sockets[0].getsockname()[1], server

    port, server = portal.run(start(), timeout=180)
    api = Api(f"http://127.0.0.1:{port}", portal, services, {"admin": ADMIN_TOKEN})
    return api, server


def stop_api(api: Api, server: Any) -> None:
    async def stop() -> None:
        server.stop()
        await server.close_all_connections()
        await api.services.__aexit__(None, None, None)

    api.portal.run(stop(), timeout=60)


def seed(api: Api) -> None:
    """Users per role, a team folder, and items to be allowed or refused."""
    ws = api.workspace
    for name, role in (
        ("dev", "developer"),
        ("op", "operator"),
        ("viewer", "viewer"),
        ("bob", "developer"),
    ):
        ws.create_user(name, password=f"password-{name}", role=role)
        api.tokens[name] = ws.create_token(name, label="tests")[0]
    ws.create_group("ops", ["op"])
    ws.create_folder("team", owner="dev")
    ws.set_folder_right("team", "g/ops", "writer")  # capped by the operator role
    ws.set_folder_right("team", "u/viewer", "viewer")
    ws.deploy("script", "f/team/hello", HELLO, author="dev")
    ws.deploy("script", "f/team/boom", BOOM, author="dev")
    ws.deploy("flow", "f/team/approve", APPROVAL_FLOW, author="dev")
    ws.deploy("script", "u/bob/private", HELLO, author="bob")
    ws.deploy("script", "u/dev/mine", HELLO, author="dev")
    ws.set_variable("f/team/plain", "visible value", description="plain")
    ws.set_variable("f/team/password", "s3cr3t-hunter2", secret=True)


@pytest.fixture(scope="module")
def api(portal: Portal, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    harness, server = start_api(portal, tmp_path_factory.mktemp("api") / "data")
    try:
        seed(harness)
        yield harness
    finally:
        stop_api(harness, server)
