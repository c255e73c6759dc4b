"""The one settings model: defaults, overridden by GRISTMILL_* variables, overridden by flags."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "share"
    )
    return Path(base) / "gristmill"


class Settings(BaseSettings):
    """Where Gristmill keeps its data and how big its kernel pool is."""

    model_config = SettingsConfigDict(env_prefix="GRISTMILL_", frozen=True)

    data: Path = Field(
        default_factory=_default_data_dir, description="data directory (store, environments)"
    )
    host: str = Field(default="127.0.0.1", description="address `serve` listens on")
    port: int = Field(default=8000, ge=0, le=65535, description="port `serve` listens on")
    pool_size: int = Field(default=2, ge=1, le=64, description="warm kernels per environment")
    kernel_start_timeout: float = Field(
        default=60.0, gt=0, description="seconds a kernel may take to start"
    )
    health_interval: float = Field(
        default=15.0, gt=0, description="seconds between health checks of idle kernels"
    )
    max_parallel_runs: int = Field(
        default=64,
        ge=1,
        le=4096,
        description="runs the server executes at once (beyond: they wait in the durable queue); "
        "kernels are the real limit, a run waiting for one holds no more than a task",
    )
    interrupt_grace: float = Field(
        default=2.0, gt=0, description="seconds a run may take to stop once interrupted"
    )
    admin_password: str | None = Field(
        default=None,
        description="password of the `admin` account created at first start (else generated and printed once)",
    )
    admin_token: str | None = Field(
        default=None, description="an API token with admin rights, ensured at every start"
    )
    secret_key: str | None = Field(
        default=None,
        description="base64 key(s) encrypting secrets (else <data>/keys/secrets.key is used)",
    )
    base_url: str = Field(
        default="", description="public URL of the server, for links (approvals, webhooks)"
    )

    oauth_provider: Literal["generic", "github", "gitlab", "google", "azure"] | None = Field(
        default=None,
        description="offer 'Sign in with <provider>' (OAuth 2 / OpenID Connect) on the login page",
    )
    oauth_key: str | None = Field(default=None, description="OAuth client id")
    oauth_secret: str | None = Field(default=None, description="OAuth client secret")
    oauth_extra: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            'JSON: provider details, e.g. {"issuer": URL} or {"authorize_url", "token_url", '
            '"userinfo_url"} for generic OIDC, {"tenant"} for azure, {"url"} for gitlab, '
            '"scope", "redirect_uri", "label"'
        ),
    )
    oauth_default_role: Literal["admin", "developer", "operator", "viewer"] = Field(
        default="viewer", description="role of a user created at their first OAuth sign-in"
    )

    def with_overrides(self, **flags: object) -> Settings:
        """A copy with the flags that were given (None means not given)."""
        given = {k: v for k, v in flags.items() if v is not None}
        return self.model_validate({**self.model_dump(), **given}) if given else self
