"""Webhooks: every script and flow the user may run with its sync and async URLs and a
copyable curl line; HMAC signing per item; the user's own API tokens.

The same rules as the API: a webhook URL is listed for items the user may run
(`POST /api/run...` needs "run"); turning signing on or off needs "write" on the item
(`PUT|DELETE /api/webhook_signing/...`); tokens are the user's own
(`POST /api/tokens`, `DELETE /api/tokens/{id}`), each change audited the same way.
"""

from __future__ import annotations

import html
import json
import secrets
import time
from typing import Any

import panel as pn

from studio.api.webhooks import SIGNATURE_HEADER
from studio.pages.parts import alert_html, choose, clicked, status_html
from studio.pages.session import PageContext
from studio.pages.template import html_pane, notice, page

DEFAULT_TOLERANCE_S = 300
SCOPES = ["read", "run", "write", "admin"]
# A placeholder per JSON type for a required argument without a default.
_PLACEHOLDERS: dict[str, Any] = {
    "string": "",
    "integer": 0,
    "number": 0,
    "boolean": False,
    "array": [],
    "object": {},
}


# ---------------------------------------------------------------- pure helpers


def example_args(schema: dict[str, Any]) -> dict[str, Any]:
    """Arguments that fit `schema`: each default, and a typed placeholder for a required
    argument that has none (so the example is accepted as it is, or nearly)."""
    args: dict[str, Any] = {}
    required = set(schema.get("required") or [])
    for name, prop in (schema.get("properties") or {}).items():
        if not isinstance(prop, dict):
            continue
        if "default" in prop:
            args[name] = prop["default"]
        elif name in required:
            if prop.get("enum"):
                args[name] = prop["enum"][0]
            else:
                kind = prop.get("type")
                args[name] = _PLACEHOLDERS.get(kind if isinstance(kind, str) else "")
    return args


def shell_quote(text: str) -> str:
    """`text` in single quotes for a POSIX shell (a quote inside becomes '\\'')."""
    return "'" + text.replace("'", "'\\''") + "'"


def webhook_urls(base: str, kind: str, path: str) -> tuple[str, str]:
    """(sync URL answering the result, async URL answering a job id)."""
    base = base.rstrip("/")
    return f"{base}/api/run_wait/{kind}/{path}", f"{base}/api/run/{kind}/{path}"


def curl_line(url: str, args: dict[str, Any]) -> str:
    """The one-line curl call of a webhook with `args` as its JSON body."""
    body = json.dumps(args, ensure_ascii=False)
    return (
        'curl -X POST -H "Authorization: Bearer $TOKEN" '
        f"-H 'Content-Type: application/json' -d {shell_quote(body)} {url}"
    )


def signed_curl(url: str, args: dict[str, Any]) -> str:
    """A shell snippet that signs the body with openssl and calls the webhook:
    `v1 = HMAC-SHA256($SECRET, "<t>.<body>")`, header `t=<t>,v1=<hex>`."""
    body = json.dumps(args, ensure_ascii=False)
    return "\n".join(
        (
            f"BODY={shell_quote(body)}",
            "TS=$(date +%s)",
            'SIG=$(printf \'%s.%s\' "$TS" "$BODY" | openssl dgst -sha256 -hmac "$SECRET" | sed \'s/^.* //\')',
            'curl -X POST -H "Authorization: Bearer $TOKEN" '
            f"-H 'Content-Type: application/json' -H \"{SIGNATURE_HEADER}: t=$TS,v1=$SIG\" "
            f'-d "$BODY" {url}',
        )
    )


def item_schema(version: Any) -> dict[str, Any]:
    """The input schema of a deployed script or flow (as `GET .../schema` answers), or
    {} when its content no longer parses (the list must still show the item)."""
    try:
        if version.kind == "flow":
            from flows.flow_files import load_flow

            return dict(load_flow(version.content, version.path).schema_ or {})
        if version.language == "sql":
            from flows.sql import sql_schema

            return dict(sql_schema(version.content, version.path))
        from kernels.scripts import Script

        if version.language == "bash":
            return dict(Script.inline(version.content, version.path, "bash").schema)
        return dict(Script.inline(version.content, version.path, "python").schema)
    except Exception:  # a broken item keeps its URLs; its example is just empty
        return {}


def request_base_url(ctx: PageContext) -> str:
    """Where callers reach this server: the configured public URL when there is one
    (behind a proxy the request's host is the proxy's), else the page request's host."""
    settings = getattr(ctx.services, "settings", None)
    configured = str(getattr(settings, "base_url", "") or "")
    if configured:
        return configured.rstrip("/")
    location = pn.state.location
    if location is not None and location.hostname:
        port = f":{location.port}" if location.port else ""
        return f"{location.protocol or 'http:'}//{location.hostname}{port}"
    host = getattr(settings, "host", "127.0.0.1")
    return f"http://{host}:{getattr(settings, 'port', 8000)}"


def _copyable(text: str, testid: str) -> str:
    # Inline handler: panes render in shadow roots, where a document-level listener
    # would not see the click; the CSP allows inline script handlers (Bokeh needs them).
    return (
        f"<div class='gm-copy' style='display:flex;gap:.4rem;align-items:flex-start'>"
        f"<pre class='gm-log' data-testid='{testid}' style='flex:1;margin:0'>{html.escape(text)}</pre>"
        "<button type='button' title='Copy to the clipboard' "
        'onclick="navigator.clipboard.writeText(this.previousElementSibling.textContent)">'
        "Copy</button></div>"
    )


def webhooks_table(base: str, rows: list[tuple[Any, dict[str, Any], bool]]) -> str:
    """One block per (version, schema, signed): URLs, the curl line, signing state."""
    if not rows:
        return (
            "<p class='gm-muted' data-testid='no-webhooks'>No script or flow you may run yet.</p>"
        )
    blocks = []
    for version, schema, signed in rows:
        sync_url, async_url = webhook_urls(base, version.kind, version.path)
        state = (
            "<span class='gm-status gm-status-suspended'>HMAC signature required</span>"
            if signed
            else "<span class='gm-muted'>unsigned (token only)</span>"
        )
        blocks.append(
            f"<section data-webhook='{html.escape(version.path)}' style='margin-bottom:1rem'>"
            f"<h5 style='margin:.2rem 0'>{html.escape(version.kind)} "
            f"<a href='/{html.escape(version.kind)}?path={html.escape(version.path)}'>"
            f"{html.escape(version.path)}</a> {state}</h5>"
            f"<div style='overflow-x:auto'><table style='width:100%'><tbody>"
            f"<tr><th align='left'>Sync</th><td><code>{html.escape(sync_url)}</code></td></tr>"
            f"<tr><th align='left'>Async</th><td><code>{html.escape(async_url)}</code></td></tr>"
            "</tbody></table></div>"
            + _copyable(curl_line(sync_url, example_args(schema)), "curl")
            + "</section>"
        )
    # Scrolls on its own so that signing and tokens stay near the top of a long workspace.
    return (
        "<div class='gm-webhooks' style='max-height:36rem;overflow-y:auto'>"
        + "".join(blocks)
        + "</div>"
    )


def tokens_table(tokens: list[Any]) -> str:
    if not tokens:
        return "<p class='gm-muted' data-testid='no-tokens'>No API tokens yet.</p>"
    rows = []
    for t in tokens:
        expires = (
            time.strftime("%Y-%m-%d %H:%M", time.localtime(t.expires_at))
            if t.expires_at
            else "never"
        )
        used = (
            time.strftime("%Y-%m-%d %H:%M", time.localtime(t.last_used_at))
            if t.last_used_at
            else "never"
        )
        state = "revoked" if t.revoked else "active"
        rows.append(
            f"<tr data-token='{html.escape(t.id)}'><td>{html.escape(t.label)}</td>"
            f"<td><code>{html.escape(t.id)}</code></td>"
            f"<td>{html.escape(', '.join(t.scopes) or 'all of your rights')}</td>"
            f"<td>{expires}</td><td>{used}</td><td>{state}</td></tr>"
        )
    return (
        "<div style='overflow-x:auto'><table class='gm-tokens' style='width:100%'><thead><tr>"
        "<th align='left'>Label</th><th align='left'>Id</th><th align='left'>Scopes</th>"
        "<th align='left'>Expires</th><th align='left'>Last used</th><th align='left'>State</th>"
        "</tr></thead><tbody>" + "".join(rows) + "</tbody></table></div>"
    )


# ---------------------------------------------------------------- the page state


class WebhooksView:
    """One session's webhooks page: the list, the signing form, the token form."""

    def __init__(self, ctx: PageContext, base_url: str) -> None:
        self.ctx = ctx
        self.base = base_url
        self.listing = html_pane()
        # Signing
        self.item = pn.widgets.Select(name="Script or flow", options={}, width=300)
        self.secret = pn.widgets.PasswordInput(
            name="Signing secret (empty: generate one)", width=260
        )
        self.tolerance = pn.widgets.IntInput(
            name="Tolerance (seconds)", value=DEFAULT_TOLERANCE_S, start=1, end=86400, width=150
        )
        self.enable = pn.widgets.Button(name="Require signature", button_type="primary", width=170)
        self.disable = pn.widgets.Button(name="Stop requiring signature", width=190)
        self.signing_out = html_pane()
        # Tokens
        self.label = pn.widgets.TextInput(
            name="Token label", placeholder="e.g. partner-x", width=200
        )
        self.scopes = pn.widgets.MultiChoice(
            name="Scopes (none: all of your rights)", options=SCOPES, width=260
        )
        self.run_prefix = pn.widgets.TextInput(
            name="Run only under (optional)", placeholder="f/support/", width=180
        )
        self.days = pn.widgets.IntInput(
            name="Expires in days (0: never)", value=90, start=0, end=3650, width=170
        )
        self.create = pn.widgets.Button(name="Create token", button_type="primary", width=140)
        self.plaintext = pn.widgets.TextInput(
            name="New token (shown once)", disabled=True, visible=False, sizing_mode="stretch_width"
        )
        self.copy = pn.widgets.Button(name="Copy token", width=120, visible=False)
        self.copy.js_on_click(
            args={"source": self.plaintext},
            code="navigator.clipboard.writeText(source.value)",
        )
        self.tokens = html_pane()
        self.revoke_pick = pn.widgets.Select(name="Token", options={}, width=260)
        self.revoke = pn.widgets.Button(name="Revoke", button_type="danger", width=100)
        self.token_out = html_pane()

        self.item.param.watch(lambda *_: self._show_signing(), "value")
        self.enable.on_click(clicked(self.enable_signing))
        self.disable.on_click(lambda _: self.disable_signing())
        self.create.on_click(clicked(self.create_token))
        self.revoke.on_click(lambda _: self.revoke_token())
        self.refresh()

    # ------------------------------------------------------------- listing

    def _runnable(self) -> list[Any]:
        workspace = self.ctx.workspace
        return [v for v in workspace.list_items() if self.ctx.can("run", v.path)]

    def refresh(self) -> None:
        workspace = self.ctx.workspace
        rows = []
        for version in self._runnable():
            signed = workspace.webhook_signing(version.kind, version.path) is not None
            rows.append((version, item_schema(version), signed))
        self.listing.object = webhooks_table(self.base, rows)
        choose(self.item, {f"{v.kind} {v.path}": f"{v.kind}:{v.path}" for v, _, _ in rows})
        self._refresh_tokens()
        self._show_signing()

    def _refresh_tokens(self) -> None:
        mine = self.ctx.workspace.list_tokens(self.ctx.user)
        self.tokens.object = tokens_table(mine)
        choose(self.revoke_pick, {f"{t.label} ({t.id})": t.id for t in mine if not t.revoked})

    def _selected(self) -> tuple[str, str]:
        kind, _, path = (self.item.value or "").partition(":")
        if kind not in ("script", "flow") or not path:
            raise ValueError("field 'Script or flow': pick the item whose webhook to sign")
        return kind, path

    def _show_signing(self, secret: str | None = None) -> None:
        try:
            kind, path = self._selected()
        except ValueError:
            self.signing_out.object = ""
            return
        found = self.ctx.workspace.webhook_signing(kind, path)
        can_write = self.ctx.can("write", path)
        self.enable.disabled = self.disable.disabled = not can_write
        sync_url, _ = webhook_urls(self.base, kind, path)
        try:
            args = example_args(item_schema(self.ctx.workspace.get(kind, path)))
        except Exception:  # deleted since the list was drawn
            args = {}
        if found is None:
            self.signing_out.object = (
                f"<p data-testid='signing-state'>{html.escape(path)}: no signature required; "
                "a valid token is enough.</p>"
            )
            return
        config = found[0]
        shown = ""
        if secret is not None:
            shown = (
                "<p role='status'>The signing secret, shown this once: give it to the sender "
                "and keep it out of your repository.</p>" + _copyable(secret, "signing-secret")
            )
        self.signing_out.object = (
            f"<p data-testid='signing-state'>{html.escape(path)}: every call must carry "
            f"<code>{SIGNATURE_HEADER}: t=&lt;unix seconds&gt;,v1=&lt;hex&gt;</code> where "
            '<code>v1 = HMAC-SHA256(secret, "&lt;t&gt;.&lt;raw body&gt;")</code>, within '
            f"{config.tolerance_s} s of the server's clock; each signed request is accepted "
            "once (a replay is refused).</p>"
            + shown
            + "<p>With <code>$TOKEN</code> and <code>$SECRET</code> set:</p>"
            + _copyable(signed_curl(sync_url, args), "signed-curl")
        )

    # ------------------------------------------------------------- signing

    def enable_signing(self) -> str | None:
        """Require HMAC signatures on the selected item; returns the secret (shown once)."""
        workspace = self.ctx.workspace
        try:
            kind, path = self._selected()
            self.ctx.require("write", path)
            workspace.get(kind, path)
            tolerance = self.tolerance.value
            if not isinstance(tolerance, int) or not 1 <= tolerance <= 86400:
                raise ValueError(
                    f"field 'Tolerance' is {tolerance!r}; expected whole seconds from 1 to 86400"
                )
            secret = self.secret.value or secrets.token_urlsafe(32)
            workspace.set_webhook_signing(kind, path, secret=secret, tolerance_s=tolerance)
        except Exception as exc:  # Forbidden, Invalid (a short secret), NotFound
            self.signing_out.object = alert_html(exc)
            return None
        self.ctx.audit("webhook.signing_set", path, kind=kind, tolerance_s=tolerance)
        self.secret.value = ""
        self.refresh()
        self._show_signing(secret)
        return secret

    def disable_signing(self) -> None:
        try:
            kind, path = self._selected()
            self.ctx.require("write", path)
            self.ctx.workspace.set_webhook_signing(kind, path, secret=None)
        except Exception as exc:
            self.signing_out.object = alert_html(exc)
            return
        self.ctx.audit("webhook.signing_removed", path, kind=kind)
        self.refresh()

    # -------------------------------------------------------------- tokens

    def create_token(self) -> str | None:
        """A new token of the signed-in user; returns the plaintext (shown once)."""
        label = (self.label.value or "").strip()
        scopes = list(self.scopes.value or [])
        prefix = (self.run_prefix.value or "").strip()
        if prefix:
            scopes.append(f"run:{prefix}")
        days = self.days.value or 0
        expires_at = time.time() + days * 86400 if days > 0 else None
        try:
            if not label:
                raise ValueError("field 'Token label' is empty; name what the token is for")
            self.ctx.actor()  # a disabled account mints nothing
            plaintext, token = self.ctx.workspace.create_token(
                self.ctx.user, label=label, scopes=scopes, expires_at=expires_at
            )
        except Exception as exc:  # Invalid scope names the scope and the expected forms
            self.token_out.object = alert_html(exc)
            return None
        self.ctx.audit("token.create", token.owner, token_id=token.id, label=label, scopes=scopes)
        self.plaintext.value = plaintext
        self.plaintext.visible = self.copy.visible = True
        self.token_out.object = (
            f"<p role='status' data-testid='token-created'>Token {html.escape(token.id)} created. "
            "Copy it now: it is shown this once and only its hash is kept.</p>"
        )
        self.label.value = ""
        self._refresh_tokens()
        return plaintext

    def revoke_token(self) -> None:
        token_id = self.revoke_pick.value
        try:
            mine = {t.id: t for t in self.ctx.workspace.list_tokens(self.ctx.user)}
            if token_id not in mine:
                raise ValueError(f"field 'Token': {token_id!r} is not one of your tokens")
            self.ctx.workspace.revoke_token(token_id)
        except Exception as exc:
            self.token_out.object = alert_html(exc)
            return
        self.ctx.audit("token.revoke", self.ctx.user, token_id=token_id)
        self.token_out.object = status_html(f"Token {token_id} revoked.")
        self.plaintext.visible = self.copy.visible = False
        self.plaintext.value = ""
        self._refresh_tokens()

    # -------------------------------------------------------------- layout

    def view(self) -> list[Any]:
        return [
            pn.pane.Markdown(
                "Call a webhook with an API token: the JSON body is the arguments (any other "
                'body arrives as `{"body": ...}`). **Sync** answers the result, **async** a '
                "job id to follow at `/api/jobs/{id}`."
            ),
            self.listing,
            pn.pane.Markdown("#### HMAC signing"),
            pn.FlexBox(self.item, self.secret, self.tolerance),
            pn.FlexBox(self.enable, self.disable),
            self.signing_out,
            pn.pane.Markdown("#### Your API tokens"),
            pn.FlexBox(self.label, self.scopes, self.run_prefix, self.days),
            self.create,
            self.token_out,
            pn.Row(self.plaintext, self.copy, sizing_mode="stretch_width"),
            self.tokens,
            pn.FlexBox(self.revoke_pick, self.revoke),
        ]


def webhooks_page(ctx: PageContext) -> pn.template.BaseTemplate:
    if ctx.workspace is None:
        return page(ctx, "Webhooks", notice("The workspace is not available."), current="/webhooks")
    view = WebhooksView(ctx, request_base_url(ctx))
    return page(ctx, "Webhooks", *view.view(), current="/webhooks")
