"""What a running script's client (`import gristmill`, see kernels/client.py) calls.

Variables, resources, state, resume links and progress, under `/api/runtime/`. A run
calls with its run token, so it has the permissions of whoever started it; state,
resume links and progress need a run token (they are about "this run"), variables and
resources accept any caller with read rights (a developer testing with their token).
"""

from __future__ import annotations

import time

from flows.records import FINISHED
from studio.api.base import ApiError, ApiHandler
from studio.job_tokens import RunClaims

# Resume links a step hands out (by mail, chat) stay valid this long.
RESUME_LINK_TTL_S = 7 * 86400


class _RuntimeHandler(ApiHandler):
    def this_run(self) -> RunClaims:
        if self.run_claims is None:
            raise ApiError(
                400,
                "this call is about the calling run; only a running script's client "
                "(its run token, GRISTMILL_TOKEN) can make it",
            )
        return self.run_claims


class VariableHandler(_RuntimeHandler):
    """`GET /api/runtime/variables/{path}`: the value, secrets included (audited)."""

    def get(self, path: str) -> None:
        self.authorize("read", path, "variable")
        variable = self.workspace.get_variable(path, reveal=True)
        if variable.secret:
            run = self.run_claims.run_id if self.run_claims else None
            self.audit("secret.read", path, run_id=run)
        self.reply({"path": path, "value": variable.value, "secret": variable.secret})


class ResourceHandler(_RuntimeHandler):
    """`GET /api/runtime/resources/{path}`."""

    def get(self, path: str) -> None:
        self.authorize("read", path, "resource")
        resource = self.workspace.get_resource(path)
        self.reply({"path": path, "resource_type": resource.resource_type, "value": resource.value})


class StateHandler(_RuntimeHandler):
    """`GET|PUT /api/runtime/state[?key=K]`: by default the state of the run's own path."""

    def _key(self, given: str | None) -> str:
        claims = self.this_run()
        if given:
            return f"key:{claims.actor}:{given}"
        if not claims.path:
            raise ApiError(400, "this run has no path to keep state under; pass a key")
        return f"path:{claims.path}"

    async def get(self) -> None:
        key = self._key(self.get_query_argument("key", None))
        self.reply({"key": key, "value": self.workspace.get_state(key)})

    async def put(self) -> None:
        body = self.body_object()
        given = body.get("key")
        if given is not None and not isinstance(given, str):
            raise ApiError(400, "key: expected a string", field="key")
        key = self._key(given)
        self.workspace.set_state(key, body.get("value"), author=self.this_run().actor)
        self.reply({"key": key})


class ResumeUrlsHandler(_RuntimeHandler):
    """`GET /api/runtime/resume_urls`: signed links for this flow run's next approval."""

    async def get(self) -> None:
        claims = self.this_run()
        engine = self.services.engine
        assert engine is not None
        # "" = whichever step of this run waits when the link is used.
        links = engine.approval_links(claims.run_id, "", time.time() + RESUME_LINK_TTL_S)
        base = self.services.public_url
        self.reply({**links, "approvalPage": f"{base}/run?id={claims.run_id}"})


class ProgressHandler(_RuntimeHandler):
    """`POST /api/runtime/progress` `{"progress": 0-100}`: shown on the run's page."""

    async def post(self) -> None:
        claims = self.this_run()
        progress = self.body_object().get("progress")
        if isinstance(progress, bool) or not isinstance(progress, int) or not 0 <= progress <= 100:
            raise ApiError(
                400,
                f"progress: expected an integer from 0 to 100, got {progress!r}",
                field="progress",
            )
        store, engine = self.services.store, self.services.engine
        assert store is not None and engine is not None
        await engine.ensure_recorded(claims.run_id)  # a short run may not be written yet
        run = await store.get_run(claims.run_id)
        if run is None or run.status in FINISHED:
            raise ApiError(409, f"run {claims.run_id} is not running")
        await store.update_run(claims.run_id, progress=progress)
        self.reply({"progress": progress})
