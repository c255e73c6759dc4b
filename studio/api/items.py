"""Scripts and flows: deploy (immutable versions), read, list, delete, versions, diff,
the shared draft, and the input schema.

One set of handlers serves both `/api/scripts/...` and `/api/flows/...`; the route
passes `kind`. Reading needs the read right on the path, deploying, drafting and
deleting need write.
"""

from __future__ import annotations

from typing import Any

from flows.flow_files import load_flow
from flows.sql import sql_schema
from kernels.scripts import Script
from studio.api.base import ApiError, ApiHandler
from studio.workspace.errors import NotFound
from studio.workspace.models import Draft, ItemKind, Version

SCRIPT_LANGUAGES = ("python", "bash", "sql")
FLOW_LANGUAGE = "yaml"


def version_meta(version: Version) -> dict[str, Any]:
    """A version without its content (lists stay small)."""
    return {
        "path": version.path,
        "kind": version.kind,
        "version": version.version,
        "hash": version.hash,
        "language": version.language,
        "summary": version.summary,
        "author": version.author,
        "created_at": version.created_at,
    }


def version_json(version: Version) -> dict[str, Any]:
    return {**version_meta(version), "content": version.content}


def draft_json(draft: Draft) -> dict[str, Any]:
    return {
        "path": draft.path,
        "kind": draft.kind,
        "content": draft.content,
        "language": draft.language,
        "author": draft.author,
        "updated_at": draft.updated_at,
    }


class _ItemHandler(ApiHandler):
    @property
    def kind(self) -> ItemKind:
        kind: ItemKind = self.route["kind"]
        return kind

    def content_and_language(self) -> tuple[str, str, dict[str, Any]]:
        body = self.body_object()
        content = body.get("content")
        if not isinstance(content, str) or not content.strip():
            raise ApiError(
                400,
                "field 'content' must be the non-empty text of the " + self.kind,
                field="content",
            )
        if self.kind == "flow":
            return content, FLOW_LANGUAGE, body
        language = body.get("language", "python")
        if language not in SCRIPT_LANGUAGES:
            raise ApiError(
                400,
                f"field 'language' must be one of {', '.join(SCRIPT_LANGUAGES)}; got {language!r}",
                field="language",
            )
        return content, language, body


class ItemsHandler(_ItemHandler):
    """`GET /api/{scripts|flows}?prefix=`: the latest version of each item the caller may read."""

    async def get(self) -> None:
        prefix = self.get_query_argument("prefix", "")
        items = [
            version_meta(v)
            for v in self.workspace.list_items(self.kind, prefix)
            if self.may("read", v.path)
        ]
        self.reply({"items": items, "total": len(items)})


class ItemHandler(_ItemHandler):
    """`GET|PUT|DELETE /api/{scripts|flows}/{path}`."""

    async def get(self, path: str) -> None:
        self.authorize("read", path, self.kind)
        version = self.query_int("version", 0, high=2**31) or None
        self.reply(version_json(self.workspace.get(self.kind, path, version)))

    async def put(self, path: str) -> None:
        actor = self.authorize("write", path, self.kind)
        content, language, body = self.content_and_language()
        summary = body.get("summary", "")
        if not isinstance(summary, str):
            raise ApiError(400, "field 'summary' must be a string", field="summary")
        try:
            before: int | None = self.workspace.get(self.kind, path).version
        except NotFound:
            before = None
        version = self.workspace.deploy(
            self.kind, path, content, author=actor.name, language=language, summary=summary
        )
        changed = version.version != before
        if changed:
            self.audit(f"{self.kind}.deploy", path, version=version.version, hash=version.hash)
        self.reply(version_json(version), 201 if changed else 200)

    async def delete(self, path: str) -> None:
        self.authorize("write", path, self.kind)
        self.workspace.get(self.kind, path)  # 404 when missing
        self.workspace.delete(self.kind, path)
        self.audit(f"{self.kind}.delete", path)
        self.reply({"deleted": path})


class VersionsHandler(_ItemHandler):
    """`GET /api/{scripts|flows}/{path}/versions`: every version, oldest first."""

    async def get(self, path: str) -> None:
        self.authorize("read", path, self.kind)
        versions = self.workspace.versions(self.kind, path)
        if not versions:
            raise ApiError(404, f"no {self.kind} at {path!r}")
        self.reply({"items": [version_meta(v) for v in versions], "total": len(versions)})


class DiffHandler(_ItemHandler):
    """`GET /api/{scripts|flows}/{path}/diff?a=N&b=M`: unified diff from version a to b."""

    async def get(self, path: str) -> None:
        self.authorize("read", path, self.kind)
        a = self.query_int("a", 0, low=1, high=2**31)
        b = self.query_int("b", 0, low=1, high=2**31)
        if not a or not b:
            raise ApiError(
                400, "queries 'a' and 'b' (version numbers) are both required", field="a"
            )
        self.reply(
            {"path": path, "a": a, "b": b, "diff": self.workspace.diff(self.kind, path, a, b)}
        )


class DraftHandler(_ItemHandler):
    """`GET|PUT /api/{scripts|flows}/{path}/draft`: the one shared draft of the item."""

    async def get(self, path: str) -> None:
        self.authorize("read", path, self.kind)
        draft = self.workspace.get_draft(self.kind, path)
        if draft is None:
            raise ApiError(404, f"the {self.kind} {path!r} has no draft")
        self.reply(draft_json(draft))

    async def put(self, path: str) -> None:
        actor = self.authorize("write", path, self.kind)
        content, language, _ = self.content_and_language()
        draft = self.workspace.save_draft(
            self.kind, path, content, author=actor.name, language=language
        )
        self.reply(draft_json(draft))


class SchemaHandler(_ItemHandler):
    """`GET /api/{scripts|flows}/{path}/schema`: the JSON Schema of the inputs (latest version)."""

    async def get(self, path: str) -> None:
        self.authorize("read", path, self.kind)
        version = self.workspace.get(self.kind, path)
        if self.kind == "flow":
            schema = load_flow(version.content, path).schema_
        elif version.language == "sql":
            schema = sql_schema(version.content, path)
        else:
            schema = Script.inline(
                version.content, path, "bash" if version.language == "bash" else "python"
            ).schema
        self.reply({"path": path, "version": version.version, "schema": schema})
