"""`POST /api/complete`: code completions for the script editor, from a live kernel.

Body `{"code": str, "cursor": int, "language"?: "python", "path"?: str}`; `cursor`
counts code points from the start of `code`, as Jupyter does. Answers
`{"matches", "cursor_start", "cursor_end", "types", "environment"}`: a chosen match
replaces `code[cursor_start:cursor_end]`.

Completing runs none of the user's code, but it does use a kernel, so it asks for the
run right: on `path` when given (the script being edited), else on the workspace (any
role that may run something). The kernel is the script's own environment's when the
pool has one warm; otherwise the default environment's, which still knows the standard
library and the script's own names. Completions never build an environment: while a
user types `import nump`, every keystroke would otherwise start `uv`.
"""

from __future__ import annotations

from typing import Any

from kernels.completion import MAX_CODE_CHARS, CompletionError, complete, warm_environment
from kernels.environments import EnvironmentSpec
from kernels.errors import KernelError
from kernels.requirements import infer_requirements
from studio.api.base import ApiError, ApiHandler
from studio.auth.permissions import require

# Languages whose scripts run on a Jupyter kernel; others get no completions (not an error,
# so an editor can ask whatever its language is).
KERNEL_LANGUAGES = ("python",)
OTHER_LANGUAGES = ("bash", "sql", "yaml")
COMPLETION_TIMEOUT_S = 5.0


def script_requirements(code: str, cursor: int) -> list[str]:
    """The script's requirements, read while it is being typed.

    Code being typed is rarely valid Python (`json.` is a syntax error), so when the whole
    text does not parse, the line under the cursor is left out and the rest is tried.
    """
    try:
        return infer_requirements(code)
    except KernelError:
        pass
    start = code.rfind("\n", 0, cursor) + 1
    end = code.find("\n", cursor)
    rest = code[:start] + (code[end:] if end != -1 else "")
    try:
        return infer_requirements(rest)
    except KernelError:
        return []


class CompleteHandler(ApiHandler):
    """`POST /api/complete`."""

    async def post(self) -> None:
        body = self.body_object()
        code, cursor, language, path = _parse(body)
        actor = self.signed_in()
        if path is not None:
            self.authorize("run", self.check_item_path(path), "script")
        else:
            require(actor, "run", None, self.workspace.folders())
        if language not in KERNEL_LANGUAGES:
            self.reply(
                {
                    "matches": [],
                    "cursor_start": cursor,
                    "cursor_end": cursor,
                    "types": [],
                    "environment": None,
                }
            )
            return
        env = self._environment(code, cursor)
        try:
            result = await complete(
                self.services.pool, code, cursor, env, timeout=COMPLETION_TIMEOUT_S
            )
        except CompletionError as exc:
            # No kernel yet, or no answer in time: the editor goes on without completions.
            raise ApiError(503, str(exc)) from None
        self.reply(
            {
                "matches": list(result.matches),
                "cursor_start": result.cursor_start,
                "cursor_end": result.cursor_end,
                "types": list(result.types),
                "environment": env.id,
            }
        )

    def _environment(self, code: str, cursor: int) -> EnvironmentSpec:
        default = self.services.environments.default()
        requirements = script_requirements(code, cursor)
        if not requirements:
            return default
        return warm_environment(self.services.pool, requirements) or default


def _parse(body: dict[str, Any]) -> tuple[str, int, str, str | None]:
    code = body.get("code")
    if not isinstance(code, str):
        raise ApiError(400, "field 'code' (the editor's text) must be a string", field="code")
    if len(code) > MAX_CODE_CHARS:
        raise ApiError(
            400,
            f"field 'code' is {len(code)} characters long; completions take at most {MAX_CODE_CHARS}",
            field="code",
        )
    cursor = body.get("cursor", len(code))
    if isinstance(cursor, bool) or not isinstance(cursor, int) or not 0 <= cursor <= len(code):
        raise ApiError(
            400,
            f"field 'cursor' must be an integer from 0 to {len(code)} (the length of 'code' "
            f"in code points), got {cursor!r}",
            field="cursor",
        )
    language = body.get("language", "python")
    if language not in (*KERNEL_LANGUAGES, *OTHER_LANGUAGES):
        raise ApiError(
            400,
            f"field 'language' must be one of {', '.join((*KERNEL_LANGUAGES, *OTHER_LANGUAGES))}, "
            f"got {language!r}",
            field="language",
        )
    path = body.get("path")
    if path is not None and not isinstance(path, str):
        raise ApiError(400, "field 'path' must be a workspace path string", field="path")
    return code, cursor, str(language), path or None
