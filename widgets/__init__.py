"""UI building blocks for the studio: run forms, result and log views, HTML sanitising.

- `widgets.forms.RunForm`: a JSON Schema (as `kernels.schema` writes it) -> a Panel form.
- `widgets.results.ResultView` / `LogView`: a run's result, display outputs and logs.
- `widgets.sanitize.sanitize_html`: user HTML made safe to show.

The names are loaded on first use, so importing the package (or `widgets.sanitize`)
does not import Panel.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "RunForm": "widgets.forms",
    "FIELD_RULES": "widgets.forms",
    "ResultView": "widgets.results",
    "LogView": "widgets.results",
    "result_kind": "widgets.results",
    "sanitize_html": "widgets.sanitize",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'widgets' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
