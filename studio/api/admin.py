"""Users, groups, folders and their rights, API tokens, and the audit log.

Users and groups are workspace-level: only admins change them. Folders: admins and
developers create them (becoming owner); a folder's owners (and admins) set its rights.
Tokens: everyone manages their own; admins see and revoke anyone's.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from studio.api.base import ApiError, ApiHandler
from studio.auth.permissions import Actor, can, require
from studio.workspace.models import RIGHTS, ROLES, Folder, Token, User
from studio.workspace.paths import check_name


def user_json(user: User) -> dict[str, Any]:
    return asdict(user)


def token_json(token: Token) -> dict[str, Any]:
    data = asdict(token)
    data["scopes"] = list(token.scopes)
    return data


def folder_json(folder: Folder) -> dict[str, Any]:
    return {"name": folder.name, "rights": dict(folder.rights)}


def folder_probe(name: str) -> str:
    """A path inside folder `name`, to ask the permission rules about the folder itself."""
    return f"f/{name}"


def _string(body: dict[str, Any], name: str, *, required: bool = True) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value):
        raise ApiError(400, f"field '{name}' must be a non-empty string", field=name)
    return value


class UsersHandler(ApiHandler):
    """`GET /api/users` and `POST /api/users` `{"name", "password", "role", "email"?}` (admin)."""

    async def get(self) -> None:
        self.require_admin()
        users = [user_json(u) for u in self.workspace.list_users()]
        self.reply({"items": users, "total": len(users)})

    async def post(self) -> None:
        self.require_admin()
        body = self.body_object()
        name = _string(body, "name")
        password = _string(body, "password")
        role = body.get("role", "viewer")
        if role not in ROLES:
            raise ApiError(
                400, f"field 'role' must be one of {', '.join(ROLES)}; got {role!r}", field="role"
            )
        email = body.get("email", "")
        if not isinstance(email, str):
            raise ApiError(400, "field 'email' must be a string", field="email")
        assert name is not None and password is not None
        user = self.workspace.create_user(name, password=password, role=role, email=email)
        self.audit("user.create", user.name, role=user.role)
        self.reply(user_json(user), 201)


class UserHandler(ApiHandler):
    """`GET /api/users/{name}` (admin or self); `PATCH` `{"role"?, "password"?, "disabled"?}`.

    Admins change anything; a user may change only their own password.
    """

    def _user(self, name: str) -> User:
        actor = self.signed_in()
        user = self.workspace.get_user(name)
        if user is None or (actor.role != "admin" and actor.name != name):
            raise ApiError(404, f"no user named {name!r}")
        return user

    async def get(self, name: str) -> None:
        self.reply(user_json(self._user(name)))

    async def patch(self, name: str) -> None:
        actor = self.signed_in()
        user = self._user(name)
        body = self.body_object()
        role, password, disabled = body.get("role"), body.get("password"), body.get("disabled")
        if actor.role != "admin" and (role is not None or disabled is not None):
            raise ApiError(
                403, f"{actor.name} may change only their own password, not role or disabled"
            )
        if role is not None and role not in ROLES:
            raise ApiError(
                400, f"field 'role' must be one of {', '.join(ROLES)}; got {role!r}", field="role"
            )
        if user.name == actor.name and (disabled is True or role not in (None, user.role)):
            # The last admin locking themselves out has no way back in through the API.
            raise ApiError(
                409, f"{actor.name} may not disable or change the role of their own account"
            )
        if password is not None and (not isinstance(password, str) or not password):
            raise ApiError(400, "field 'password' must be a non-empty string", field="password")
        if disabled is not None and not isinstance(disabled, bool):
            raise ApiError(400, "field 'disabled' must be true or false", field="disabled")
        updated = self.workspace.update_user(
            user.name, role=role, password=password, disabled=disabled
        )
        changes: dict[str, Any] = {}
        if role is not None:
            changes["role"] = role
        if disabled is not None:
            changes["disabled"] = disabled
        if password is not None:
            changes["password"] = "changed"
        self.audit("user.update", user.name, **changes)
        self.reply(user_json(updated))


class GroupsHandler(ApiHandler):
    """`GET /api/groups` (signed in); `POST /api/groups` `{"name", "members"}` (admin)."""

    async def get(self) -> None:
        self.signed_in()
        groups = [asdict(g) for g in self.workspace.list_groups()]
        self.reply({"items": groups, "total": len(groups)})

    async def post(self) -> None:
        self.require_admin()
        body = self.body_object()
        name = _string(body, "name")
        members = _members(body)
        assert name is not None
        group = self.workspace.create_group(name, members)
        self.audit("group.create", group.name, members=list(group.members))
        self.reply(asdict(group), 201)


def _members(body: dict[str, Any]) -> list[str]:
    members = body.get("members", [])
    if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
        raise ApiError(400, "field 'members' must be a list of user names", field="members")
    return members


class GroupHandler(ApiHandler):
    """`PUT /api/groups/{name}` `{"members"}` (admin)."""

    async def put(self, name: str) -> None:
        self.require_admin()
        group = self.workspace.set_group_members(name, _members(self.body_object()))
        self.audit("group.members", group.name, members=list(group.members))
        self.reply(asdict(group))


def _sees_folder(actor: Actor, folder: Folder, folders: dict[str, Folder]) -> bool:
    return actor.role == "admin" or can(actor, "read", folder_probe(folder.name), folders)


class FoldersHandler(ApiHandler):
    """`GET /api/folders` (those the caller has a right in); `POST` `{"name"}` (admin, developer)."""

    async def get(self) -> None:
        actor = self.signed_in()
        folders = self.workspace.folders()
        items = [folder_json(f) for f in folders.values() if _sees_folder(actor, f, folders)]
        self.reply({"items": items, "total": len(items)})

    async def post(self) -> None:
        actor = self.signed_in()
        if actor.role not in ("admin", "developer") or (
            actor.scopes is not None and not {"write", "admin"} & set(actor.scopes)
        ):
            raise ApiError(403, f"{actor.name} ({actor.role}) may not create folders")
        name = _string(self.body_object(), "name")
        assert name is not None
        check_name(name, "name")
        folder = self.workspace.create_folder(name, owner=actor.name)
        self.audit("folder.create", folder.name)
        self.reply(folder_json(folder), 201)


class FolderHandler(ApiHandler):
    """`GET /api/folders/{name}`."""

    async def get(self, name: str) -> None:
        actor = self.signed_in()
        folders = self.workspace.folders()
        folder = folders.get(name)
        if folder is None or not _sees_folder(actor, folder, folders):
            raise ApiError(404, f"no folder named {name!r}")
        self.reply(folder_json(folder))


class FolderRightsHandler(ApiHandler):
    """`PUT /api/folders/{name}/rights` `{"principal": "u/x"|"g/y", "right": ...|null}` (owners)."""

    async def put(self, name: str) -> None:
        actor = self.signed_in()
        folders = self.workspace.folders()
        folder = folders.get(name)
        if folder is None or not _sees_folder(actor, folder, folders):
            raise ApiError(404, f"no folder named {name!r}")
        require(actor, "admin", folder_probe(name), folders)
        body = self.body_object()
        principal = _string(body, "principal")
        assert principal is not None
        right = body.get("right")
        if right is not None and right not in RIGHTS:
            raise ApiError(
                400,
                f"field 'right' must be one of {', '.join(RIGHTS)} or null; got {right!r}",
                field="right",
            )
        updated = self.workspace.set_folder_right(name, principal, right)
        self.audit("folder.right", name, principal=principal, right=right)
        self.reply(folder_json(updated))


class TokensHandler(ApiHandler):
    """`GET /api/tokens?owner=`; `POST /api/tokens` `{"label", "scopes"?, "expires_at"?, "owner"?}`.

    The plaintext token is in the creation response only.
    """

    async def get(self) -> None:
        actor = self.signed_in()
        owner = self.get_query_argument("owner", None) or None
        if actor.role != "admin":
            if owner not in (None, actor.name):
                raise ApiError(403, f"{actor.name} may list only their own tokens")
            owner = actor.name
        tokens = [token_json(t) for t in self.workspace.list_tokens(owner)]
        self.reply({"items": tokens, "total": len(tokens)})

    async def post(self) -> None:
        actor = self.signed_in()
        body = self.body_object()
        label = _string(body, "label")
        assert label is not None
        scopes = body.get("scopes", [])
        if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
            raise ApiError(400, "field 'scopes' must be a list of strings", field="scopes")
        if actor.scopes is not None:
            # A scoped token must not mint a wider one (a way out of its scopes).
            scopes = scopes or list(actor.scopes)
            wider = sorted(set(scopes) - set(actor.scopes))
            if wider:
                raise ApiError(
                    403, f"this token is limited to {list(actor.scopes)}; it cannot grant {wider}"
                )
        expires_at = body.get("expires_at")
        if expires_at is not None and (
            isinstance(expires_at, bool) or not isinstance(expires_at, (int, float))
        ):
            raise ApiError(
                400, "field 'expires_at' must be a Unix time in seconds", field="expires_at"
            )
        owner = body.get("owner", actor.name)
        if owner != actor.name and actor.role != "admin":
            raise ApiError(403, f"{actor.name} may create tokens only for themselves")
        if not isinstance(owner, str) or self.workspace.get_user(owner) is None:
            raise ApiError(400, f"field 'owner': no user named {owner!r}", field="owner")
        plaintext, token = self.workspace.create_token(
            owner, label=label, scopes=scopes, expires_at=expires_at
        )
        self.audit("token.create", token.owner, token_id=token.id, label=label, scopes=scopes)
        self.reply({**token_json(token), "token": plaintext}, 201)


class TokenHandler(ApiHandler):
    """`DELETE /api/tokens/{id}`: revoke (own tokens; admins: any)."""

    async def delete(self, token_id: str) -> None:
        actor = self.signed_in()
        owner = None if actor.role == "admin" else actor.name
        token = next((t for t in self.workspace.list_tokens(owner) if t.id == token_id), None)
        if token is None:
            raise ApiError(404, f"no token with id {token_id!r}")
        self.workspace.revoke_token(token_id)
        self.audit("token.revoke", token.owner, token_id=token_id)
        self.reply({"revoked": token_id})


class AuditHandler(ApiHandler):
    """`GET /api/audit?limit=&offset=&actor=&action=` (admin)."""

    async def get(self) -> None:
        self.require_admin()
        entries = self.workspace.audit_log(
            limit=self.query_int("limit", 100, low=1, high=1000),
            offset=self.query_int("offset", 0, high=10**9),
            actor=self.get_query_argument("actor", None) or None,
            action=self.get_query_argument("action", None) or None,
        )
        self.reply({"items": [asdict(e) for e in entries]})
