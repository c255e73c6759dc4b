"""Scripts and flows: immutable deployed versions and one shared draft per item (part of `Workspace`)."""

from __future__ import annotations

import difflib
import hashlib
from typing import Any

from flows.errors import FlowSpecError
from flows.flow_files import load_flow
from kernels.errors import ScriptError
from kernels.scripts import Script
from studio.workspace.errors import Invalid, NotFound
from studio.workspace.models import Draft, ItemKind, Version
from studio.workspace.paths import check_path
from studio.workspace.store_base import PREFIX_SQL, StoreCore, check_kind

SCRIPT_LANGUAGES = ("python", "bash", "sql")
FLOW_LANGUAGE = "yaml"  # YAML or JSON text: the flows loader reads both
_VERSION_COLUMNS = "path, kind, version, hash, content, language, summary, author, created_at"


def content_hash(language: str, content: str) -> str:
    """What identifies a version's content: sha256 hex of language, NUL, content."""
    return hashlib.sha256(f"{language}\0{content}".encode()).hexdigest()


def _version(row: tuple[Any, ...]) -> Version:
    path, kind, version, hashed, content, language, summary, author, created_at = row
    return Version(
        path=path,
        kind=kind,
        version=version,
        hash=hashed,
        content=content,
        language=language,
        summary=summary,
        author=author,
        created_at=created_at,
    )


def item_language(kind: ItemKind, language: str) -> str:
    """The language stored for an item: one of SCRIPT_LANGUAGES for a script; "yaml" for
    a flow (callers may pass the default "python", or "yaml"/"json")."""
    if kind == "flow":
        if language not in ("python", "yaml", "json"):
            raise Invalid(
                f"language {language!r} is not a flow language; expected yaml", field="language"
            )
        return FLOW_LANGUAGE
    if language not in SCRIPT_LANGUAGES:
        raise Invalid(
            f"language {language!r} is not a script language; expected one of {', '.join(SCRIPT_LANGUAGES)}",
            field="language",
        )
    return language


def validate_item(kind: ItemKind, path: str, content: str, language: str) -> None:
    """Invalid with the loader's own message if the content cannot be deployed."""
    if not isinstance(content, str) or not content.strip():
        raise Invalid(
            f"{kind} {path!r}: content is empty; expected the {kind}'s source text", field="content"
        )
    if kind == "flow":
        try:
            load_flow(content, path)
        except FlowSpecError as exc:
            raise Invalid(str(exc), field="content") from None
    elif language in ("python", "bash"):
        try:
            Script.inline(content, path, "python" if language == "python" else "bash").schema  # noqa: B018
        except ScriptError as exc:
            raise Invalid(str(exc), field="content") from None
    # "sql": nothing to check beyond non-empty; the SQL guard checks it when it runs.


class ItemStore(StoreCore):
    """Deploy, read, list, diff and delete scripts and flows; drafts."""

    def deploy(
        self,
        kind: ItemKind,
        path: str,
        content: str,
        *,
        author: str,
        language: str = "python",
        summary: str = "",
    ) -> Version:
        """Store `content` as the item's next version, after validating it. Identical
        content (same language) to the latest version returns that version unchanged.
        A draft equal to what was deployed is dropped; a different one is kept."""
        check_kind(kind)
        check_path(path)
        language = item_language(kind, language)
        validate_item(kind, path, content, language)
        hashed = content_hash(language, content)
        with self._db.transaction() as con:
            row = con.execute(
                f"SELECT {_VERSION_COLUMNS} FROM versions WHERE kind = ? AND path = ? "
                "ORDER BY version DESC LIMIT 1",
                (kind, path),
            ).fetchone()
            latest = _version(row) if row else None
            if latest is not None and latest.hash == hashed:
                return latest
            version = Version(
                path=path,
                kind=kind,
                version=latest.version + 1 if latest else 1,
                hash=hashed,
                content=content,
                language=language,
                summary=summary,
                author=author,
                created_at=self._now(),
            )
            con.execute(
                f"INSERT INTO versions ({_VERSION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    path,
                    kind,
                    version.version,
                    hashed,
                    content,
                    language,
                    summary,
                    author,
                    version.created_at,
                ),
            )
            con.execute(
                "DELETE FROM drafts WHERE kind = ? AND path = ? AND content = ? AND language = ?",
                (kind, path, content, language),
            )
        return version

    def get(self, kind: ItemKind, path: str, version: int | None = None) -> Version:
        """The latest version of the item, or the numbered one; NotFound naming what is missing."""
        check_kind(kind)
        if version is None:
            row = self._db.row(
                f"SELECT {_VERSION_COLUMNS} FROM versions WHERE kind = ? AND path = ? "
                "ORDER BY version DESC LIMIT 1",
                (kind, path),
            )
        else:
            row = self._db.row(
                f"SELECT {_VERSION_COLUMNS} FROM versions WHERE kind = ? AND path = ? AND version = ?",
                (kind, path, version),
            )
        if row is None:
            if version is not None and self._db.row(
                "SELECT 1 FROM versions WHERE kind = ? AND path = ?", (kind, path)
            ):
                last = self.get(kind, path).version
                raise NotFound(
                    f"{kind} {path!r} has no version {version}; expected 1 to {last}",
                    field="version",
                )
            raise NotFound(f"{kind} {path!r} does not exist", field="path")
        return _version(row)

    def versions(self, kind: ItemKind, path: str) -> list[Version]:
        """Every version of the item, oldest first; NotFound if it was never deployed."""
        check_kind(kind)
        rows = self._db.rows(
            f"SELECT {_VERSION_COLUMNS} FROM versions WHERE kind = ? AND path = ? ORDER BY version",
            (kind, path),
        )
        if not rows:
            raise NotFound(f"{kind} {path!r} does not exist", field="path")
        return [_version(r) for r in rows]

    def list_items(self, kind: ItemKind | None = None, prefix: str = "") -> list[Version]:
        """The latest version of each item (of `kind`, under `prefix`), by kind then path."""
        if kind is not None:
            check_kind(kind)
        rows = self._db.rows(
            f"SELECT {_VERSION_COLUMNS} FROM versions AS v WHERE version = "
            "(SELECT max(version) FROM versions WHERE kind = v.kind AND path = v.path) "
            f"AND (? IS NULL OR kind = ?) AND {PREFIX_SQL} ORDER BY kind, path",
            (kind, kind, prefix, prefix),
        )
        return [_version(r) for r in rows]

    def delete(self, kind: ItemKind, path: str) -> None:
        """Remove the item with all its versions, its draft and its webhook signing."""
        check_kind(kind)
        with self._db.transaction() as con:
            gone = con.execute(
                "DELETE FROM versions WHERE kind = ? AND path = ?", (kind, path)
            ).rowcount
            dropped = con.execute(
                "DELETE FROM drafts WHERE kind = ? AND path = ?", (kind, path)
            ).rowcount
            if not gone and not dropped:
                raise NotFound(f"{kind} {path!r} does not exist", field="path")
            con.execute("DELETE FROM webhook_signing WHERE kind = ? AND path = ?", (kind, path))

    def save_draft(
        self, kind: ItemKind, path: str, content: str, *, author: str, language: str = "python"
    ) -> Draft:
        """Save the item's one shared draft (last save wins). Drafts are not validated:
        keeping half-written work is their purpose."""
        check_kind(kind)
        check_path(path)
        language = item_language(kind, language)
        if not isinstance(content, str):
            raise Invalid(
                f"content of draft {path!r} is a {type(content).__name__}; expected text",
                field="content",
            )
        draft = Draft(
            path=path,
            kind=kind,
            content=content,
            language=language,
            author=author,
            updated_at=self._now(),
        )
        with self._db.transaction() as con:
            con.execute(
                "INSERT INTO drafts (kind, path, content, language, author, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (kind, path) DO UPDATE SET "
                "content = excluded.content, language = excluded.language, "
                "author = excluded.author, updated_at = excluded.updated_at",
                (kind, path, content, language, author, draft.updated_at),
            )
        return draft

    def get_draft(self, kind: ItemKind, path: str) -> Draft | None:
        check_kind(kind)
        row = self._db.row(
            "SELECT path, kind, content, language, author, updated_at FROM drafts WHERE kind = ? AND path = ?",
            (kind, path),
        )
        if row is None:
            return None
        return Draft(
            path=row[0],
            kind=row[1],
            content=row[2],
            language=row[3],
            author=row[4],
            updated_at=row[5],
        )

    def diff(self, kind: ItemKind, path: str, a: int, b: int) -> str:
        """Unified diff from version `a` to version `b` ("" when they are the same)."""
        old, new = self.get(kind, path, a), self.get(kind, path, b)
        lines = difflib.unified_diff(
            old.content.splitlines(),
            new.content.splitlines(),
            fromfile=f"{path} v{a}",
            tofile=f"{path} v{b}",
            lineterm="",
        )
        text = "\n".join(lines)
        return text + "\n" if text else ""
