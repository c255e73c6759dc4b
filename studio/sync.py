"""Git sync: a workspace as plain, diff-friendly files (`gristmill sync pull|push DIR`).

Layout under DIR, for an item at path `u/alice/x` (or `f/<folder>/...`):

    u/alice/x.py  (.sh, .sql)   the script's code, byte for byte as deployed
    u/alice/x.script.yaml       summary, language, hash of the deployed version
    u/alice/x.flow.yaml         the flow's YAML, as stored
    u/alice/x.schedule.yaml     cron, timezone, target, args, options
    u/alice/x.variable.yaml     value and description; a secret has `secret: true` and NO value
    u/alice/x.resource.yaml     resource type, value, description
    f/<folder>/folder.meta.yaml the folder's rights

Meta files have a fixed key order and end with a newline, so git diffs stay small.
`pull` fetches everything before it writes anything, then writes each file atomically;
`push` uploads only what differs from the server and deletes nothing without `--delete`.
Neither ever writes or sends a secret's value.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from studio.api_client import ApiClientError, Client, HttpError
from studio.workspace.errors import Invalid
from studio.workspace.paths import check_name, check_path

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
CODE_SUFFIXES = {"python": ".py", "bash": ".sh", "sql": ".sql"}
LANGUAGES = {suffix: language for language, suffix in CODE_SUFFIXES.items()}
META = {
    "script": ".script.yaml",
    "flow": ".flow.yaml",
    "schedule": ".schedule.yaml",
    "variable": ".variable.yaml",
    "resource": ".resource.yaml",
}
FOLDER_META = "folder.meta.yaml"
FLOW_LANGUAGE = "yaml"


class SyncError(Exception):
    """Files or a server answer that sync cannot use; the message names the file or item."""


def content_hash(language: str, content: str) -> str:
    """The version hash the server computes (`studio.workspace.store_items.content_hash`)."""
    return hashlib.sha256(f"{language}\0{content}".encode()).hexdigest()


# ---------------------------------------------------------------------------- snapshot


@dataclass(frozen=True)
class ScriptItem:
    path: str
    content: str
    language: str = "python"
    summary: str = ""

    @property
    def hash(self) -> str:
        return content_hash(self.language, self.content)


@dataclass(frozen=True)
class FlowItem:
    path: str
    content: str

    @property
    def hash(self) -> str:
        return content_hash(FLOW_LANGUAGE, self.content)


@dataclass(frozen=True)
class VariableItem:
    """`value` is None for a secret: its value never leaves the server through sync."""

    path: str
    value: str | None
    secret: bool = False
    description: str = ""


@dataclass(frozen=True)
class ResourceItem:
    path: str
    resource_type: str
    value: dict[str, Any]
    description: str = ""


@dataclass(frozen=True)
class ScheduleItem:
    path: str
    cron: str
    target_path: str
    target_kind: str = "script"
    timezone: str = "UTC"
    args: dict[str, Any] = field(default_factory=dict)
    enabled: bool = True
    no_overlap: bool = False
    catch_up: str = "latest"
    on_failure: str | None = None
    on_recovery: str | None = None


@dataclass(frozen=True)
class FolderItem:
    name: str
    rights: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Snapshot:
    """A workspace's syncable items, each kind keyed by path (folders by name)."""

    scripts: dict[str, ScriptItem] = field(default_factory=dict)
    flows: dict[str, FlowItem] = field(default_factory=dict)
    variables: dict[str, VariableItem] = field(default_factory=dict)
    resources: dict[str, ResourceItem] = field(default_factory=dict)
    schedules: dict[str, ScheduleItem] = field(default_factory=dict)
    folders: dict[str, FolderItem] = field(default_factory=dict)


def _from_json(cls: type[Any], data: dict[str, Any]) -> Any:
    """Build `cls` from an API (or file) object, ignoring fields it does not sync."""
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


# ---------------------------------------------------------------------------- files


def _sorted(value: Any) -> Any:
    """Nested mappings with sorted keys, so the server's order never shows in a diff."""
    if isinstance(value, dict):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    # Multi-line strings as `|` blocks: a one-line change is a one-line diff.
    style = "|" if "\n" in text and text.strip() == text.rstrip("\n").lstrip() else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _str)


def _yaml(data: dict[str, Any]) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


def workspace_to_files(snapshot: Snapshot) -> dict[str, str]:
    """Every file of the snapshot: relative path (with `/`) -> text."""
    files: dict[str, str] = {}
    for s in snapshot.scripts.values():
        if s.language not in CODE_SUFFIXES:
            raise SyncError(f"script {s.path}: language {s.language!r} has no file suffix")
        files[s.path + CODE_SUFFIXES[s.language]] = s.content
        meta = {"summary": s.summary, "language": s.language, "hash": s.hash}
        files[s.path + META["script"]] = _yaml(meta)
    for f in snapshot.flows.values():
        files[f.path + META["flow"]] = f.content
    for v in snapshot.variables.values():
        data: dict[str, Any] = {"description": v.description, "secret": v.secret}
        if not v.secret:
            data["value"] = v.value if v.value is not None else ""
        files[v.path + META["variable"]] = _yaml(data)
    for r in snapshot.resources.values():
        data = {"description": r.description, "resource_type": r.resource_type}
        files[r.path + META["resource"]] = _yaml({**data, "value": _sorted(r.value)})
    for sc in snapshot.schedules.values():
        data = {k: v for k, v in asdict(sc).items() if k != "path"}
        files[sc.path + META["schedule"]] = _yaml({**data, "args": _sorted(sc.args)})
    for folder in snapshot.folders.values():
        files[f"f/{folder.name}/{FOLDER_META}"] = _yaml({"rights": _sorted(folder.rights)})
    return files


def _read(file: Path) -> str:
    """The text exactly as stored (no newline translation), so hashes match the server's."""
    with open(file, encoding="utf-8", newline="") as handle:
        return handle.read()


def _read_yaml(file: Path, relpath: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise SyncError(f"{relpath}: not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SyncError(f"{relpath}: expected a mapping of keys, got {type(data).__name__}")
    return data


def _item_path(relpath: str, suffix: str) -> str:
    path = relpath[: -len(suffix)]
    try:
        return check_path(path)
    except Invalid as exc:
        raise SyncError(f"{relpath}: {exc.message}") from None


def _expect(relpath: str, data: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    value = data.get(key)
    if not isinstance(value, kind):
        names = " or ".join(t.__name__ for t in (kind if isinstance(kind, tuple) else (kind,)))
        raise SyncError(f"{relpath}: key '{key}' must be a {names}, got {value!r}")
    return value


def _check_keys(relpath: str, data: dict[str, Any], allowed: Sequence[str]) -> None:
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise SyncError(
            f"{relpath}: unknown key '{unknown[0]}'; expected only {', '.join(allowed)}"
        )


def files_to_workspace(directory: Path) -> tuple[Snapshot, list[str]]:
    """Read DIR back into a snapshot; also the files it ignored (not under u/ or f/, or
    not named like a workspace file). A secret with a value is refused: secrets are set
    in the studio, never committed."""
    snap = Snapshot()
    ignored: list[str] = []
    code: dict[str, tuple[str, str]] = {}  # path -> (language, relpath)
    metas: dict[str, dict[str, Any]] = {}
    for file in sorted(p for p in directory.rglob("*") if p.is_file()):
        rel = file.relative_to(directory).as_posix()
        if rel.split("/")[0] not in ("u", "f") or "/." in "/" + rel:
            ignored.append(rel)
            continue
        parts = rel.split("/")
        if parts[-1] == FOLDER_META and len(parts) == 3 and parts[0] == "f":
            rights = _read_yaml(file, rel).get("rights") or {}
            if not isinstance(rights, dict):
                raise SyncError(f"{rel}: key 'rights' must be a mapping of principal to right")
            snap.folders[parts[1]] = FolderItem(check_name(parts[1], "folder"), dict(rights))
            continue
        kind = next((k for k, suffix in META.items() if rel.endswith(suffix)), None)
        if kind == "flow":
            path = _item_path(rel, META["flow"])
            snap.flows[path] = FlowItem(path, _read(file))
        elif kind == "script":
            data = _read_yaml(file, rel)
            _check_keys(rel, data, ("summary", "language", "hash"))
            metas[_item_path(rel, META["script"])] = data
        elif kind is not None:
            _read_config(snap, kind, _item_path(rel, META[kind]), _read_yaml(file, rel), rel)
        elif file.suffix in LANGUAGES:
            path = _item_path(rel, file.suffix)
            if path in code:
                raise SyncError(f"{rel}: the script {path} also has the file {code[path][1]}")
            code[path] = (LANGUAGES[file.suffix], rel)
        else:
            ignored.append(rel)
    for path in metas:
        if path not in code:
            suffixes = "/".join(CODE_SUFFIXES.values())
            raise SyncError(f"{path}{META['script']}: no code file {path}({suffixes}) beside it")
    for path, (language, rel) in code.items():
        meta = metas.get(path, {})
        if meta.get("language", language) != language:
            raise SyncError(
                f"{path}{META['script']}: language {meta['language']!r} does not match "
                f"the file {rel} ({language})"
            )
        content = _read(directory / rel)
        summary = meta.get("summary") or ""
        snap.scripts[path] = ScriptItem(path, content, language, str(summary))
    return snap, ignored


def _read_config(snap: Snapshot, kind: str, path: str, data: dict[str, Any], rel: str) -> None:
    if kind == "variable":
        _check_keys(rel, data, ("description", "secret", "value"))
        secret = bool(data.get("secret", False))
        if secret and data.get("value") not in (None, ""):
            raise SyncError(
                f"{rel}: a secret's value must not be in the files (it would be committed to "
                "git); remove the 'value' key and set the secret in the studio"
            )
        value = None if secret else data.get("value", "")
        if value is not None and not isinstance(value, str):
            value = json.dumps(value) if isinstance(value, dict | list) else str(value)
        description = str(data.get("description") or "")
        snap.variables[path] = VariableItem(path, value, secret, description)
    elif kind == "resource":
        _check_keys(rel, data, ("description", "resource_type", "value"))
        resource_type = _expect(rel, data, "resource_type", str)
        value = _expect(rel, data, "value", dict)
        description = str(data.get("description") or "")
        snap.resources[path] = ResourceItem(path, resource_type, value, description)
    else:
        allowed = [f.name for f in fields(ScheduleItem) if f.name != "path"]
        _check_keys(rel, data, allowed)
        _expect(rel, data, "cron", str)
        _expect(rel, data, "target_path", str)
        if not isinstance(data.get("args", {}), dict):
            raise SyncError(f"{rel}: key 'args' must be a mapping of argument names to values")
        snap.schedules[path] = _from_json(ScheduleItem, {**data, "path": path})


# ---------------------------------------------------------------------------- writing


def _write_atomic(target: Path, text: str) -> None:
    """Write a temporary file beside `target`, then rename it over: a reader (or a crash)
    sees the old file or the new one, never half of one."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"
    )
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_files(
    directory: Path, files: dict[str, str], *, delete: bool = False, dry_run: bool = False
) -> list[str]:
    """Make DIR hold `files`; returns the relative paths changed (`+`, `~`, `-` prefixed).
    Unchanged files are not touched; workspace files not in `files` go only with `delete`."""
    changes: list[str] = []
    for rel, text in sorted(files.items()):
        target = directory / rel
        old = _read(target) if target.is_file() else None
        if old != text:
            if not dry_run:
                _write_atomic(target, text)
            changes.append(("~ " if old is not None else "+ ") + rel)
    if delete and directory.is_dir():
        current = _workspace_files(directory)
        for rel in sorted(current - set(files)):
            if not dry_run:
                (directory / rel).unlink()
            changes.append("- " + rel)
    return changes


def _workspace_files(directory: Path) -> set[str]:
    """The files under DIR that sync owns (what `files_to_workspace` reads)."""
    suffixes = (*META.values(), *CODE_SUFFIXES.values(), FOLDER_META)
    found = (f.relative_to(directory).as_posix() for f in directory.rglob("*") if f.is_file())
    return {
        rel
        for rel in found
        if rel.split("/")[0] in ("u", "f") and "/." not in "/" + rel and rel.endswith(suffixes)
    }


# ---------------------------------------------------------------------------- server


def fetch_snapshot(client: Client, known: Snapshot | None = None) -> Snapshot:
    """Everything sync covers on the server. Scripts and flows whose hash matches `known`
    reuse its content instead of being downloaded again."""
    known = known or Snapshot()
    snap = Snapshot()
    for meta in client.items("/api/scripts"):
        path = meta["path"]
        item = known.scripts.get(path)
        if item is None or item.hash != meta["hash"]:
            version = client.call("GET", f"/api/scripts/{path}")
            item = ScriptItem(path, version["content"], version["language"])
        snap.scripts[path] = replace(item, summary=meta.get("summary") or "")
    for meta in client.items("/api/flows"):
        path = meta["path"]
        flow = known.flows.get(path)
        if flow is None or flow.hash != meta["hash"]:
            flow = FlowItem(path, client.call("GET", f"/api/flows/{path}")["content"])
        snap.flows[path] = flow
    for data in client.items("/api/variables"):
        variable = _from_json(VariableItem, data)
        snap.variables[variable.path] = (
            replace(variable, value=None) if variable.secret else variable
        )
    for data in client.items("/api/resources"):
        snap.resources[data["path"]] = _from_json(ResourceItem, data)
    for data in client.items("/api/schedules"):
        snap.schedules[data["path"]] = _from_json(ScheduleItem, data)
    for data in client.items("/api/folders"):
        snap.folders[data["name"]] = _from_json(FolderItem, data)
    return snap


# ---------------------------------------------------------------------------- push plan


@dataclass(frozen=True)
class Change:
    """One request push makes (or, with `method` empty, an item it cannot push, and why)."""

    symbol: str  # "+" create, "~" update, "-" delete, "!" skipped
    kind: str
    path: str
    method: str = ""
    route: str = ""
    body: dict[str, Any] | None = None
    note: str = ""

    def line(self) -> str:
        return f"{self.symbol} {self.kind} {self.path}" + (f"  ({self.note})" if self.note else "")


def _put(kind: str, route: str, path: str, body: dict[str, Any], exists: bool) -> Change:
    return Change("~" if exists else "+", kind, path, "PUT", f"{route}/{path}", body)


def plan_push(local: Snapshot, remote: Snapshot, *, delete: bool = False) -> list[Change]:
    """The requests that make the server match the files, in an order that works:
    folders first, schedules after what they run, deletes last."""
    plan: list[Change] = []
    for name, folder in sorted(local.folders.items()):
        current = remote.folders.get(name)
        if current is None:
            plan.append(Change("+", "folder", name, "POST", "/api/folders", {"name": name}))
        have = current.rights if current else {}
        wanted = dict(folder.rights)
        if delete:
            wanted |= {p: None for p in have if p not in folder.rights}  # type: ignore[misc]
        for principal, right in sorted(wanted.items()):
            if have.get(principal) != right:
                grant = {"principal": principal, "right": right}
                route = f"/api/folders/{name}/rights"
                plan.append(
                    Change("~", "folder", name, "PUT", route, grant, f"{principal}: {right}")
                )
    for path, s in sorted(local.scripts.items()):
        old = remote.scripts.get(path)
        if old is None or old.hash != s.hash:
            script = {"content": s.content, "language": s.language, "summary": s.summary}
            plan.append(_put("script", "/api/scripts", path, script, old is not None))
    for path, f in sorted(local.flows.items()):
        old_flow = remote.flows.get(path)
        if old_flow is None or old_flow.hash != f.hash:
            plan.append(
                _put("flow", "/api/flows", path, {"content": f.content}, old_flow is not None)
            )
    for path, r in sorted(local.resources.items()):
        if remote.resources.get(path) != r:
            body: dict[str, Any] = {
                "resource_type": r.resource_type,
                "value": r.value,
                "description": r.description,
            }
            plan.append(_put("resource", "/api/resources", path, body, path in remote.resources))
    for path, v in sorted(local.variables.items()):
        plan.extend(_plan_variable(v, remote.variables.get(path)))
    for path, sc in sorted(local.schedules.items()):
        if remote.schedules.get(path) != sc:
            body = {k: val for k, val in asdict(sc).items() if k != "path"}
            plan.append(_put("schedule", "/api/schedules", path, body, path in remote.schedules))
    if delete:
        for kind, route, mine, theirs in (
            ("schedule", "/api/schedules", local.schedules, remote.schedules),
            ("variable", "/api/variables", local.variables, remote.variables),
            ("resource", "/api/resources", local.resources, remote.resources),
            ("flow", "/api/flows", local.flows, remote.flows),
            ("script", "/api/scripts", local.scripts, remote.scripts),
        ):
            for path in sorted(set(theirs) - set(mine)):
                plan.append(Change("-", kind, path, "DELETE", f"{route}/{path}"))
    return plan


def _plan_variable(v: VariableItem, old: VariableItem | None) -> list[Change]:
    if not v.secret:
        if old == v:
            return []
        body = {"value": v.value or "", "secret": False, "description": v.description}
        return [_put("variable", "/api/variables", v.path, body, old is not None)]
    # A secret in the files has no value, so push can neither create it nor change it.
    if old is None:
        note = "a secret is not in the files; set its value in the studio"
    elif not old.secret:
        note = "marked secret in the files; set its value in the studio to make it one"
    elif old.description != v.description:
        note = "a secret's description changes only with its value, in the studio"
    else:
        return []
    return [Change("!", "variable", v.path, note=note)]


# ---------------------------------------------------------------------------- commands


def add_sync_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of `gristmill sync` (the CLI's subparser, or a parser of its own)."""
    parser.add_argument(
        "action", choices=("pull", "push"), help="pull: server -> files; push: files -> server"
    )
    parser.add_argument("directory", type=Path, metavar="DIR")
    parser.add_argument(
        "--url", default="http://127.0.0.1:8000", help="the studio (default: %(default)s)"
    )
    parser.add_argument("--token", help="an API token (default: $GRISTMILL_TOKEN)")
    parser.add_argument(
        "--delete", action="store_true", help="also delete what exists only on the receiving side"
    )
    parser.add_argument("--dry-run", action="store_true", help="print the changes, make none")


def sync_main(args: argparse.Namespace | Sequence[str]) -> int:
    """`gristmill sync pull|push DIR`: prints one line per change on stdout; 0 ok, 1 the
    server failed or refused, 2 bad input (the message names the file or item)."""
    if not isinstance(args, argparse.Namespace):
        parser = argparse.ArgumentParser(prog="gristmill sync")
        add_sync_arguments(parser)
        args = parser.parse_args(list(args))
    token = args.token or os.environ.get("GRISTMILL_TOKEN", "")
    if not token:
        return _fail(EXIT_BAD_INPUT, "no API token: pass --token or set GRISTMILL_TOKEN")
    client = Client(args.url, token)
    run: Callable[..., list[str]] = pull if args.action == "pull" else push
    try:
        lines = run(client, args.directory, delete=args.delete, dry_run=args.dry_run)
    except HttpError as exc:
        return _fail(EXIT_BAD_INPUT if exc.status in (400, 422) else EXIT_FAILED, str(exc))
    except (SyncError, ApiClientError) as exc:
        return _fail(EXIT_BAD_INPUT, str(exc))
    for line in lines:
        print(line)
    verb = "would change" if args.dry_run else "changed"
    print(f"gristmill sync {args.action}: {verb} {len(lines)}", file=sys.stderr)
    return EXIT_OK


def _fail(code: int, message: str) -> int:
    print(f"gristmill: {message}", file=sys.stderr)
    return code


def pull(
    client: Client, directory: Path, *, delete: bool = False, dry_run: bool = False
) -> list[str]:
    """Write the server's workspace into DIR. Everything is fetched before the first
    write, so a failed pull leaves the files as they were."""
    if directory.exists() and not directory.is_dir():
        raise SyncError(f"{directory}: exists and is not a directory")
    try:
        local, _ignored = files_to_workspace(directory) if directory.is_dir() else (Snapshot(), [])
    except SyncError:
        local = Snapshot()  # unreadable local files are overwritten, not reused
    files = workspace_to_files(fetch_snapshot(client, local))
    return write_files(directory, files, delete=delete, dry_run=dry_run)


def push(
    client: Client, directory: Path, *, delete: bool = False, dry_run: bool = False
) -> list[str]:
    """Upload what differs between DIR and the server; refuses the whole push (before any
    request) when a file is invalid or holds a secret's value."""
    if not directory.is_dir():
        raise SyncError(f"{directory}: not a directory")
    local, _ignored = files_to_workspace(directory)
    plan = plan_push(local, fetch_snapshot(client, local), delete=delete)
    done: list[str] = []
    for change in plan:
        if change.method and not dry_run:
            try:
                client.call(change.method, change.route, change.body)
            except HttpError as exc:
                before = f" (after {len(done)} change(s): {'; '.join(done)})" if done else ""
                raise HttpError(exc.status, f"{change.kind} {change.path}: {exc}{before}") from None
        done.append(change.line())
    return done
