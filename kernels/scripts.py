"""A script as Gristmill sees it: its text, its language, its inputs and its needs.

`Script.from_file` reads a `.py` or `.sh` file; `Script.inline` wraps code that lives
elsewhere (a flow step). The schema and requirements are worked out from the text
alone, never by running it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kernels import bash, requirements, schema
from kernels.arguments import ArgumentChecker
from kernels.errors import ScriptError
from kernels.messages import Language, RunContext, RunJob, RunLimits

_LANGUAGES: dict[str, Language] = {".py": "python", ".sh": "bash"}


@dataclass(frozen=True)
class Script:
    """The source of one script and where it came from."""

    source: str
    path: str
    language: Language = "python"

    @classmethod
    def from_file(cls, file: str | Path) -> Script:
        """Read a script file; its extension says its language."""
        path = Path(file)
        language = _LANGUAGES.get(path.suffix)
        if language is None:
            known = ", ".join(sorted(_LANGUAGES))
            raise ScriptError(
                f"cannot run a '{path.suffix or 'extensionless'}' file as a script; expected one of {known}",
                path=str(file),
            )
        try:
            source = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ScriptError("no such file", path=str(file)) from None
        except IsADirectoryError:
            raise ScriptError("is a directory, expected a script file", path=str(file)) from None
        except UnicodeDecodeError as exc:
            raise ScriptError(
                f"is not UTF-8 text ({exc.reason} at byte {exc.start})", path=str(file)
            ) from None
        return cls(source=source, path=str(file), language=language)

    @classmethod
    def inline(cls, source: str, path: str = "<inline>", language: Language = "python") -> Script:
        return cls(source=source, path=path, language=language)

    @functools.cached_property
    def schema(self) -> dict[str, Any]:
        """JSON Schema 2020-12 of the inputs (raises ScriptError for a broken script)."""
        if self.language == "bash":
            return bash.bash_schema(self.source, self.path)
        return schema.script_schema(self.source, self.path)

    @functools.cached_property
    def check_arguments(self) -> ArgumentChecker:
        """`validate_arguments` against this script's schema, its validator built once."""
        return ArgumentChecker(self.schema)

    @functools.cached_property
    def requirements(self) -> list[str]:
        """Third-party requirements, one requirement string each (none for bash)."""
        if self.language == "bash":
            return []
        return requirements.infer_requirements(self.source, self.path)

    @functools.cached_property
    def imports(self) -> tuple[str, ...] | None:
        """What running it imports (`requirements.run_imports`); none for bash."""
        if self.language == "bash":
            return ()
        return requirements.run_imports(self.source)

    def job(
        self,
        args: dict[str, Any],
        *,
        context: RunContext | None = None,
        limits: RunLimits | None = None,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
    ) -> RunJob:
        """The job that runs this script with already validated `args`."""
        argv = tuple(bash.bash_argv(self.source, args)) if self.language == "bash" else ()
        return RunJob(
            source=self.source,
            path=self.path,
            language=self.language,
            args={} if self.language == "bash" else dict(args),
            argv=argv,
            env=dict(env or {}),
            context=context or RunContext(script_path=self.path),
            limits=limits or RunLimits(),
            cwd=cwd,
            imports=self.imports,
        )
