"""Users, groups, folders and their rights, API tokens and sessions (part of `Workspace`)."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Sequence
from typing import Any

from studio.auth.passwords import hash_password, needs_rehash, verify_password
from studio.auth.permissions import Actor, check_scope
from studio.workspace.errors import Conflict, Invalid, NotFound
from studio.workspace.models import RIGHTS, ROLES, Folder, Group, Right, Role, Token, User
from studio.workspace.paths import check_name
from studio.workspace.store_base import StoreCore

MIN_PASSWORD = 8
MIN_GIVEN_TOKEN = 16
_USER_COLUMNS = "name, role, email, disabled, created_at"
_TOKEN_COLUMNS = "id, owner, label, scopes, created_at, expires_at, revoked, last_used_at"


def digest(plaintext: str) -> str:
    """What is stored of a token or session id: the sha256 hex of its plaintext."""
    return hashlib.sha256(plaintext.encode("utf-8")).hexdigest()


def _user(row: tuple[Any, ...]) -> User:
    name, role, email, disabled, created_at = row
    return User(name=name, role=role, email=email, disabled=bool(disabled), created_at=created_at)


def _token(row: tuple[Any, ...]) -> Token:
    token_id, owner, label, scopes, created_at, expires_at, revoked, last_used_at = row
    return Token(
        id=token_id,
        owner=owner,
        label=label,
        scopes=tuple(json.loads(scopes)),
        created_at=created_at,
        expires_at=expires_at,
        revoked=bool(revoked),
        last_used_at=last_used_at,
    )


def _check_role(role: str) -> Role:
    if role not in ROLES:
        raise Invalid(
            f"role {role!r} is not a role; expected one of {', '.join(ROLES)}", field="role"
        )
    return role


def _check_password(password: str) -> str:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        size = len(password) if isinstance(password, str) else "no"
        raise Invalid(
            f"password has {size} characters; expected at least {MIN_PASSWORD}", field="password"
        )
    return password


class AccessStore(StoreCore):
    """Accounts and rights. Every write here empties the access caches."""

    _dummy_hash: str | None = None

    # ------------------------------------------------------------------ users

    def create_user(self, name: str, *, password: str, role: Role, email: str = "") -> User:
        """A new enabled account; Conflict if the name is taken."""
        check_name(name, "user name")
        _check_role(role)
        _check_password(password)
        if email and "@" not in email:
            raise Invalid(
                f"email {email!r} has no '@'; expected an address like ana@example.com",
                field="email",
            )
        hashed = hash_password(password)  # slow by design: outside the write lock
        now = self._now()
        with self._db.transaction() as con:
            if con.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
                raise Conflict(f"user {name!r} exists already", field="name")
            con.execute(
                "INSERT INTO users (name, role, email, password_hash, disabled, created_at) "
                "VALUES (?, ?, ?, ?, 0, ?)",
                (name, role, email, hashed, now),
            )
        self._cache.clear_access()
        return User(name=name, role=role, email=email, created_at=now)

    def authenticate(self, name: str, password: str) -> User | None:
        """The user if the password is theirs and the account is enabled; None otherwise."""
        row = self._db.row(
            f"SELECT {_USER_COLUMNS}, password_hash FROM users WHERE name = ?", (name,)
        )
        if row is None:
            # Spend the same time as for a real user: the answer's delay must not tell
            # whether the account exists.
            verify_password(self._dummy(), password)
            return None
        user, hashed = _user(row[:5]), row[5]
        if not verify_password(hashed, password) or user.disabled:
            return None
        if needs_rehash(hashed):
            with self._db.transaction() as con:
                con.execute(
                    "UPDATE users SET password_hash = ? WHERE name = ?",
                    (hash_password(password), name),
                )
        return user

    def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = hash_password(secrets.token_urlsafe(16))
        return self._dummy_hash

    def get_user(self, name: str) -> User | None:
        cached = self._cache.users.get(name)
        if cached is not None:
            return cached
        row = self._db.row(f"SELECT {_USER_COLUMNS} FROM users WHERE name = ?", (name,))
        if row is None:
            return None
        user = self._cache.users[name] = _user(row)
        return user

    def _require_user(self, name: str, field: str = "user") -> User:
        user = self.get_user(name)
        if user is None:
            raise NotFound(f"{field} {name!r} does not exist", field=field)
        return user

    def list_users(self) -> list[User]:
        return [_user(r) for r in self._db.rows(f"SELECT {_USER_COLUMNS} FROM users ORDER BY name")]

    def update_user(
        self,
        name: str,
        *,
        role: Role | None = None,
        password: str | None = None,
        disabled: bool | None = None,
    ) -> User:
        """Change role, password or enabled state. A new password or disabling ends the
        user's sessions. The last enabled admin cannot be demoted or disabled."""
        if role is not None:
            _check_role(role)
        hashed = hash_password(_check_password(password)) if password is not None else None
        with self._db.transaction() as con:
            user = self._require_user(name)
            losing_admin = (
                user.role == "admin"
                and not user.disabled
                and ((role is not None and role != "admin") or disabled is True)
            )
            if losing_admin:
                (admins,) = con.execute(
                    "SELECT count(*) FROM users WHERE role = 'admin' AND disabled = 0"
                ).fetchone()
                if admins <= 1:
                    raise Conflict(
                        f"user {name!r} is the last enabled admin; make another user admin first",
                        field="role" if role is not None else "disabled",
                    )
            if role is not None:
                con.execute("UPDATE users SET role = ? WHERE name = ?", (role, name))
            if hashed is not None:
                con.execute("UPDATE users SET password_hash = ? WHERE name = ?", (hashed, name))
            if disabled is not None:
                con.execute("UPDATE users SET disabled = ? WHERE name = ?", (int(disabled), name))
            if hashed is not None or disabled:
                con.execute("DELETE FROM sessions WHERE user_name = ?", (name,))
            self._cache.clear_access()
        self._cache.clear_access()  # again: nothing read inside the transaction stays cached
        return self._require_user(name)

    # ----------------------------------------------------------------- groups

    def create_group(self, name: str, members: Sequence[str] = ()) -> Group:
        check_name(name, "group name")
        with self._db.transaction() as con:
            if con.execute("SELECT 1 FROM groups WHERE name = ?", (name,)).fetchone():
                raise Conflict(f"group {name!r} exists already", field="name")
            con.execute("INSERT INTO groups (name, created_at) VALUES (?, ?)", (name, self._now()))
            return self.set_group_members(name, members)

    def set_group_members(self, name: str, members: Sequence[str]) -> Group:
        """Replace the group's members; every member must be an existing user."""
        if isinstance(members, str):
            raise Invalid(
                f"members {members!r} is one string; expected a list of user names", field="members"
            )
        unique = sorted(set(members))
        with self._db.transaction() as con:
            if not con.execute("SELECT 1 FROM groups WHERE name = ?", (name,)).fetchone():
                raise NotFound(f"group {name!r} does not exist", field="group")
            for member in unique:
                self._require_user(member, "member")
            con.execute("DELETE FROM group_members WHERE group_name = ?", (name,))
            con.executemany(
                "INSERT INTO group_members (group_name, user_name) VALUES (?, ?)",
                [(name, member) for member in unique],
            )
            self._cache.clear_access()
        return Group(name=name, members=tuple(unique))

    def list_groups(self) -> list[Group]:
        members: dict[str, list[str]] = {
            name: [] for (name,) in self._db.rows("SELECT name FROM groups ORDER BY name")
        }
        for group, user in self._db.rows(
            "SELECT group_name, user_name FROM group_members ORDER BY user_name"
        ):
            members[group].append(user)
        return [Group(name=name, members=tuple(users)) for name, users in members.items()]

    def groups_of(self, user: str) -> tuple[str, ...]:
        cached = self._cache.groups_of.get(user)
        if cached is not None:
            return cached
        rows = self._db.rows(
            "SELECT group_name FROM group_members WHERE user_name = ? ORDER BY group_name", (user,)
        )
        found = self._cache.groups_of[user] = tuple(name for (name,) in rows)
        return found

    # ---------------------------------------------------------------- folders

    def create_folder(self, name: str, *, owner: str) -> Folder:
        """A new folder; `owner` (a user name, or `u/<name>`) gets the "owner" right."""
        check_name(name, "folder name")
        owner = owner.removeprefix("u/")
        with self._db.transaction() as con:
            self._require_user(owner, "owner")
            if con.execute("SELECT 1 FROM folders WHERE name = ?", (name,)).fetchone():
                raise Conflict(f"folder {name!r} exists already", field="name")
            con.execute("INSERT INTO folders (name, created_at) VALUES (?, ?)", (name, self._now()))
            con.execute(
                'INSERT INTO folder_rights (folder, principal, "right") VALUES (?, ?, ?)',
                (name, f"u/{owner}", "owner"),
            )
            self._cache.clear_access()
        return Folder(name=name, rights={f"u/{owner}": "owner"})

    def set_folder_right(self, folder: str, principal: str, right: Right | None) -> Folder:
        """Give `principal` (`u/<user>` or `g/<group>`) a right in `folder`; None removes it."""
        if right is not None and right not in RIGHTS:
            raise Invalid(
                f"right {right!r} is not a folder right; expected one of {', '.join(RIGHTS)} (or none to remove)",
                field="right",
            )
        kind, _, name = principal.partition("/")
        if kind not in ("u", "g") or not name:
            raise Invalid(
                f"principal {principal!r} is not valid; expected u/<user> or g/<group>",
                field="principal",
            )
        with self._db.transaction() as con:
            if not con.execute("SELECT 1 FROM folders WHERE name = ?", (folder,)).fetchone():
                raise NotFound(f"folder {folder!r} does not exist", field="folder")
            if kind == "u":
                self._require_user(name, "principal")
            elif not con.execute("SELECT 1 FROM groups WHERE name = ?", (name,)).fetchone():
                raise NotFound(
                    f"principal {principal!r}: group {name!r} does not exist", field="principal"
                )
            if right is None:
                con.execute(
                    "DELETE FROM folder_rights WHERE folder = ? AND principal = ?",
                    (folder, principal),
                )
            else:
                con.execute(
                    'INSERT INTO folder_rights (folder, principal, "right") VALUES (?, ?, ?) '
                    'ON CONFLICT (folder, principal) DO UPDATE SET "right" = excluded."right"',
                    (folder, principal, right),
                )
            self._cache.clear_access()
        return self.folders()[folder]

    def folders(self) -> dict[str, Folder]:
        """Every folder with its rights (a fresh copy: callers may not change the cache)."""
        if self._cache.folders is None:
            found: dict[str, dict[str, Right]] = {
                name: {} for (name,) in self._db.rows("SELECT name FROM folders ORDER BY name")
            }
            for folder, principal, right in self._db.rows(
                'SELECT folder, principal, "right" FROM folder_rights ORDER BY principal'
            ):
                found[folder][principal] = right
            self._cache.folders = {
                name: Folder(name=name, rights=rights) for name, rights in found.items()
            }
        return {
            name: Folder(name=name, rights=dict(f.rights))
            for name, f in self._cache.folders.items()
        }

    def actor(self, user: str, scopes: tuple[str, ...] | None = None) -> Actor:
        """The user with their groups, as the permission rules see them. `scopes` are a
        token's scopes; None or () (an unscoped token) means the user's full rights."""
        found = self._require_user(user)
        return Actor(
            name=found.name,
            role=found.role,
            groups=self.groups_of(found.name),
            scopes=tuple(scopes) if scopes else None,
        )

    # ----------------------------------------------------------------- tokens

    def create_token(
        self,
        owner: str,
        *,
        label: str,
        scopes: Sequence[str] = (),
        expires_at: float | None = None,
    ) -> tuple[str, Token]:
        """A new token: (plaintext, shown once; its record). `scopes=()` = the owner's full rights."""
        plaintext = "gm_" + secrets.token_urlsafe(32)  # 256 random bits
        return plaintext, self._insert_token(plaintext, owner, label, scopes, expires_at)

    def _insert_token(
        self,
        plaintext: str,
        owner: str,
        label: str,
        scopes: Sequence[str],
        expires_at: float | None,
    ) -> Token:
        if isinstance(scopes, str):
            raise Invalid(
                f"scopes {scopes!r} is one string; expected a list of scopes", field="scopes"
            )
        checked = tuple(dict.fromkeys(check_scope(s) for s in scopes))
        now = self._now()
        if expires_at is not None and expires_at <= now:
            raise Invalid(
                f"expires_at {expires_at} is in the past; expected a unix time after {now:.0f}",
                field="expires_at",
            )
        token = Token(
            id="tok_" + secrets.token_hex(8),
            owner=owner,
            label=label,
            scopes=checked,
            created_at=now,
            expires_at=expires_at,
        )
        with self._db.transaction() as con:
            self._require_user(owner, "owner")
            con.execute(
                "INSERT INTO tokens (id, hash, owner, label, scopes, created_at, expires_at, revoked) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, 0)",
                (
                    token.id,
                    digest(plaintext),
                    owner,
                    label,
                    json.dumps(list(checked)),
                    now,
                    expires_at,
                ),
            )
            self._cache.clear_access()
        return token

    def resolve_token(self, plaintext: str, now: float) -> tuple[User, Token] | None:
        """The owner and token for a plaintext token, or None if it is unknown, expired,
        revoked or its owner disabled. A token seen before is answered from memory."""
        hashed = digest(plaintext)
        found = self._cache.tokens.get(hashed)
        if found is None:
            row = self._db.row(
                f"SELECT {_TOKEN_COLUMNS}, hash FROM tokens WHERE hash = ?", (hashed,)
            )
            # The lookup is by hash, so timing says nothing about the plaintext; the
            # comparison guards against a lookup that matched on something else.
            if row is None or not hmac.compare_digest(row[8], hashed):
                return None
            token = _token(row[:8])
            user = self.get_user(token.owner)
            if user is None or token.revoked or user.disabled:
                return None
            found = self._cache.tokens[hashed] = (user, token)
        user, token = found
        if token.expires_at is not None and now >= token.expires_at:
            return None
        self._last_used[token.id] = now
        return user, token

    def _flush_last_used(self) -> None:
        if not self._last_used:
            return
        pending, self._last_used = self._last_used, {}
        with self._db.transaction() as con:
            con.executemany(
                "UPDATE tokens SET last_used_at = max(coalesce(last_used_at, 0), ?) WHERE id = ?",
                [(at, token_id) for token_id, at in pending.items()],
            )

    def list_tokens(self, owner: str | None = None) -> list[Token]:
        self._flush_last_used()
        if owner is None:
            rows = self._db.rows(f"SELECT {_TOKEN_COLUMNS} FROM tokens ORDER BY created_at, id")
        else:
            rows = self._db.rows(
                f"SELECT {_TOKEN_COLUMNS} FROM tokens WHERE owner = ? ORDER BY created_at, id",
                (owner,),
            )
        return [_token(r) for r in rows]

    def revoke_token(self, token_id: str) -> None:
        with self._db.transaction() as con:
            if con.execute("UPDATE tokens SET revoked = 1 WHERE id = ?", (token_id,)).rowcount == 0:
                raise NotFound(f"token {token_id!r} does not exist", field="token_id")
            self._cache.clear_access()

    def ensure_token(self, plaintext: str, owner: str, *, label: str) -> Token:
        """Make a given plaintext (GRISTMILL_ADMIN_TOKEN) a token of `owner`, unscoped;
        idempotent: the token stored for that value before is returned as it is."""
        if len(plaintext) < MIN_GIVEN_TOKEN:
            raise Invalid(
                f"token for {label!r} has {len(plaintext)} characters; expected at least "
                f'{MIN_GIVEN_TOKEN} random ones (e.g. `python -c "import secrets; print(secrets.token_urlsafe(32))"`)',
                field="token",
            )
        row = self._db.row(
            f"SELECT {_TOKEN_COLUMNS} FROM tokens WHERE hash = ?", (digest(plaintext),)
        )
        if row is not None:
            return _token(row)
        return self._insert_token(plaintext, owner, label, (), None)

    # --------------------------------------------------------------- sessions

    def create_session(self, user: str, *, ttl_s: float = 7 * 86400) -> str:
        """A new session for `user`; returns the plaintext id (the cookie value)."""
        plaintext = secrets.token_urlsafe(32)
        now = self._now()
        with self._db.transaction() as con:
            self._require_user(user)
            con.execute("DELETE FROM sessions WHERE expires_at <= ?", (now,))
            con.execute(
                "INSERT INTO sessions (hash, user_name, created_at, expires_at) VALUES (?, ?, ?, ?)",
                (digest(plaintext), user, now, now + ttl_s),
            )
        return plaintext

    def resolve_session(self, plaintext: str, now: float) -> User | None:
        """The session's user, or None if it is unknown, expired or the user disabled."""
        hashed = digest(plaintext)
        row = self._db.row(
            "SELECT hash, user_name, expires_at FROM sessions WHERE hash = ?", (hashed,)
        )
        if row is None or not hmac.compare_digest(row[0], hashed) or now >= row[2]:
            return None
        user = self.get_user(row[1])
        return None if user is None or user.disabled else user

    def end_session(self, plaintext: str) -> None:
        with self._db.transaction() as con:
            con.execute("DELETE FROM sessions WHERE hash = ?", (digest(plaintext),))
