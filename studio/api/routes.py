"""The API's URL table: `api_routes(services)` gives Tornado rules the server mounts.

`{path}` is `u/<user>/<name>` or `f/<folder>/<name>`, and a name may contain '/', so the
suffix routes (`/versions`, `/diff`, `/draft`, `/schema`) come before the item route:
Tornado takes the first rule that matches, and those suffixes are reserved. Path
groups are percent-decoded by Tornado, so `u%2Falice%2Fx` works as well.
"""

from __future__ import annotations

import json
import time
from typing import Any

from studio.api import admin, auth, complete, config, history, items, jobs, runtime
from studio.api.base import ApiHandler, NotFoundHandler
from studio.api.openapi import build_openapi
from studio.services import Services

Rule = tuple[str, type[ApiHandler], dict[str, Any]]


class HealthHandler(ApiHandler):
    """`GET /api/health`: no sign-in; what is running (no paths, no user data: anyone
    may ask)."""

    public = True

    async def prepare(self) -> None:
        return None  # health answers whatever credentials come with it

    def get(self) -> None:
        services = self.services
        self.reply(
            {
                "status": "ok",
                "uptime_s": round(time.monotonic() - self.route["started"], 1),
                "kernels": services.pool.stats(),
                "flow_runs_in_progress": services.dispatcher.busy if services.dispatcher else 0,
            }
        )


class OpenApiHandler(ApiHandler):
    """`GET /api/openapi.json`."""

    public = True

    async def prepare(self) -> None:
        return None

    def get(self) -> None:
        self.finish(self.route["document"])


def api_routes(services: Services) -> list[Rule]:
    """Every /api/ rule, ending with a JSON 404 for the rest of /api/."""
    base = {"services": services}
    document = json.dumps(build_openapi(services.settings.base_url))
    rules: list[Rule] = [
        (r"/api/health", HealthHandler, {**base, "started": time.monotonic()}),
        (r"/api/openapi\.json", OpenApiHandler, {**base, "document": document}),
        (r"/api/auth/login", auth.LoginHandler, base),
        (r"/api/auth/logout", auth.LogoutHandler, base),
        (r"/api/auth/me", auth.MeHandler, base),
    ]
    for plural, kind in (("scripts", "script"), ("flows", "flow")):
        opts = {**base, "kind": kind}
        rules += [
            (rf"/api/{plural}", items.ItemsHandler, opts),
            (rf"/api/{plural}/(.+)/versions", items.VersionsHandler, opts),
            (rf"/api/{plural}/(.+)/diff", items.DiffHandler, opts),
            (rf"/api/{plural}/(.+)/draft", items.DraftHandler, opts),
            (rf"/api/{plural}/(.+)/schema", items.SchemaHandler, opts),
            (rf"/api/{plural}/(.+)", items.ItemHandler, opts),
            (rf"/api/run/{kind}/(.+)", jobs.RunHandler, {**opts, "wait": False}),
            (rf"/api/run_wait/{kind}/(.+)", jobs.RunHandler, {**opts, "wait": True}),
        ]
    rules += [
        (r"/api/jobs", jobs.JobsHandler, base),
        (r"/api/jobs/([^/]+)/logs", jobs.JobLogsHandler, base),
        (r"/api/jobs/([^/]+)/cancel", jobs.JobCancelHandler, base),
        (r"/api/jobs/([^/]+)/approve", jobs.ApproveHandler, {**base, "action": "approve"}),
        (r"/api/jobs/([^/]+)/reject", jobs.ApproveHandler, {**base, "action": "reject"}),
        (r"/api/jobs/([^/]+)", jobs.JobHandler, base),
        (r"/api/approvals", jobs.ApprovalsHandler, base),
        (r"/api/resume/(.+)", jobs.LinkHandler, {**base, "action": "resume"}),
        (r"/api/cancel/(.+)", jobs.LinkHandler, {**base, "action": "cancel"}),
        (r"/api/users", admin.UsersHandler, base),
        (r"/api/users/([^/]+)", admin.UserHandler, base),
        (r"/api/groups", admin.GroupsHandler, base),
        (r"/api/groups/([^/]+)", admin.GroupHandler, base),
        (r"/api/folders", admin.FoldersHandler, base),
        (r"/api/folders/([^/]+)/rights", admin.FolderRightsHandler, base),
        (r"/api/folders/([^/]+)", admin.FolderHandler, base),
        (r"/api/tokens", admin.TokensHandler, base),
        (r"/api/tokens/([^/]+)", admin.TokenHandler, base),
        (r"/api/audit", admin.AuditHandler, base),
        (r"/api/secrets/rotate", config.SecretKeyRotationHandler, base),
        (r"/api/variables", config.VariablesHandler, base),
        (r"/api/variables/(.+)", config.VariableHandler, base),
        (r"/api/resource_types", config.ResourceTypesHandler, base),
        (r"/api/resource_types/([^/]+)", config.ResourceTypeHandler, base),
        (r"/api/resources", config.ResourcesHandler, base),
        (r"/api/resources/(.+)", config.ResourceHandler, base),
        (r"/api/schedules", config.SchedulesHandler, base),
        (r"/api/schedules/(.+)", config.ScheduleHandler, base),
        (r"/api/webhook_signing/(script|flow)/(.+)", config.WebhookSigningHandler, base),
        (r"/api/complete", complete.CompleteHandler, base),
        (r"/api/history/sql", history.HistorySqlHandler, base),
        (r"/api/runtime/variables/(.+)", runtime.VariableHandler, base),
        (r"/api/runtime/resources/(.+)", runtime.ResourceHandler, base),
        (r"/api/runtime/state", runtime.StateHandler, base),
        (r"/api/runtime/resume_urls", runtime.ResumeUrlsHandler, base),
        (r"/api/runtime/progress", runtime.ProgressHandler, base),
        (r"/api/.*", NotFoundHandler, base),
    ]
    return rules
