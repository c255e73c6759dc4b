"""Users, groups and folders (admins only): create users with a role and a password,
change a role, disable or enable; groups and their members; folders and the rights of
`u/<user>` and `g/<group>` in them (owner / writer / viewer).

Others get an "admins only" page, and every action checks the admin role again when it
runs (`require("admin", None)`, the check `studio.api.admin` makes), so an open page
of a user demoted meanwhile refuses too. Each change is audited under the API's action
names (`user.create`, `user.update`, `group.create`, `group.members`, `folder.create`,
`folder.right`).
"""

from __future__ import annotations

import html
import time
from typing import Any

import panel as pn

from studio.pages.parts import alert_html, choose, status_html
from studio.pages.session import PageContext
from studio.pages.template import html_pane, notice, page
from studio.workspace.models import RIGHTS, ROLES

NO_RIGHT = "(none: remove)"
ADMINS_ONLY = (
    "Users, groups and folders are managed by admins only. Ask an admin to change your "
    "role, your groups or your rights in a folder."
)


def users_table(users: list[Any]) -> str:
    rows = "".join(
        f"<tr data-user='{html.escape(u.name)}'><td>{html.escape(u.name)}</td>"
        f"<td>{html.escape(u.role)}</td><td>{html.escape(u.email)}</td>"
        f"<td>{'disabled' if u.disabled else 'active'}</td>"
        f"<td class='gm-muted'>{time.strftime('%Y-%m-%d', time.localtime(u.created_at))}</td></tr>"
        for u in users
    )
    return (
        "<div style='overflow-x:auto'><table class='gm-users' style='width:100%'><thead><tr>"
        "<th align='left'>User</th><th align='left'>Role</th><th align='left'>Email</th>"
        "<th align='left'>State</th><th align='left'>Since</th></tr></thead>"
        f"<tbody>{rows}</tbody></table></div>"
    )


def groups_table(groups: list[Any]) -> str:
    if not groups:
        return "<p class='gm-muted' data-testid='no-groups'>No groups yet.</p>"
    rows = "".join(
        f"<tr data-group='{html.escape(g.name)}'><td>{html.escape(g.name)}</td>"
        f"<td>{html.escape(', '.join(g.members)) or '<span class=gm-muted>nobody</span>'}</td></tr>"
        for g in groups
    )
    return (
        "<div style='overflow-x:auto'><table class='gm-groups' style='width:100%'><thead><tr>"
        "<th align='left'>Group</th><th align='left'>Members</th></tr></thead>"
        f"<tbody>{rows}</tbody></table></div>"
    )


def folders_table(folders: list[Any]) -> str:
    if not folders:
        return "<p class='gm-muted' data-testid='no-folders'>No folders yet.</p>"
    rows = []
    for f in folders:
        rights = ", ".join(
            f"<span data-right='{html.escape(p)}'>{html.escape(p)}: {html.escape(r)}</span>"
            for p, r in sorted(f.rights.items())
        )
        rows.append(
            f"<tr data-folder='{html.escape(f.name)}'><td>f/{html.escape(f.name)}</td><td>{rights}</td></tr>"
        )
    return (
        "<div style='overflow-x:auto'><table class='gm-folders' style='width:100%'><thead><tr>"
        "<th align='left'>Folder</th><th align='left'>Rights</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


class UsersView:
    """One admin session's users, groups and folders page."""

    def __init__(self, ctx: PageContext) -> None:
        self.ctx = ctx
        # Users
        self.users = html_pane()
        self.new_name = pn.widgets.TextInput(name="User name", width=180)
        self.new_password = pn.widgets.PasswordInput(
            name="Password", placeholder="at least 8 characters", width=180
        )
        self.new_role = pn.widgets.Select(
            name="Role", options=list(ROLES), value="viewer", width=130
        )
        self.new_email = pn.widgets.TextInput(name="Email (optional)", width=200)
        self.create_user_button = pn.widgets.Button(
            name="Create user", button_type="primary", width=130
        )
        self.user_pick = pn.widgets.Select(name="User", options=[], width=180)
        self.role_pick = pn.widgets.Select(name="New role", options=list(ROLES), width=130)
        self.role_button = pn.widgets.Button(name="Change role", width=120)
        self.disable_button = pn.widgets.Button(
            name="Disable / enable", button_type="warning", width=140
        )
        self.user_out = html_pane()
        # Groups
        self.groups = html_pane()
        self.group_name = pn.widgets.TextInput(name="Group name", width=180)
        self.group_members = pn.widgets.MultiChoice(name="Members", options=[], width=300)
        self.group_create = pn.widgets.Button(name="Create group", button_type="primary", width=130)
        self.group_pick = pn.widgets.Select(name="Group", options=[], width=180)
        self.group_set = pn.widgets.Button(name="Set members", width=120)
        self.group_out = html_pane()
        # Folders
        self.folders = html_pane()
        self.folder_name = pn.widgets.TextInput(name="Folder name", width=180)
        self.folder_create = pn.widgets.Button(
            name="Create folder", button_type="primary", width=130
        )
        self.folder_pick = pn.widgets.Select(name="Folder", options=[], width=180)
        self.principal = pn.widgets.Select(name="Principal", options=[], width=200)
        self.right = pn.widgets.Select(
            name="Right", options=[*RIGHTS, NO_RIGHT], value="viewer", width=150
        )
        self.right_button = pn.widgets.Button(name="Set right", width=110)
        self.folder_out = html_pane()

        self.create_user_button.on_click(lambda _: self.create_user())
        self.role_button.on_click(lambda _: self.change_role())
        self.disable_button.on_click(lambda _: self.toggle_disabled())
        self.group_create.on_click(lambda _: self.create_group())
        self.group_set.on_click(lambda _: self.set_members())
        self.group_pick.param.watch(lambda *_: self._show_members(), "value")
        self.folder_create.on_click(lambda _: self.create_folder())
        self.right_button.on_click(lambda _: self.set_right())
        self.refresh()

    def _admin(self) -> None:
        self.ctx.require("admin", None)

    def refresh(self) -> None:
        workspace = self.ctx.workspace
        users = workspace.list_users()
        groups = workspace.list_groups()
        folders = list(workspace.folders().values())
        self.users.object = users_table(users)
        self.groups.object = groups_table(groups)
        self.folders.object = folders_table(folders)
        names = [u.name for u in users]
        choose(self.user_pick, names)
        self.group_members.options = names
        choose(self.group_pick, [g.name for g in groups])
        choose(self.folder_pick, [f.name for f in folders])
        choose(self.principal, [f"u/{n}" for n in names] + [f"g/{g.name}" for g in groups])

    def _show_members(self) -> None:
        group = next(
            (g for g in self.ctx.workspace.list_groups() if g.name == self.group_pick.value), None
        )
        if group is not None:
            self.group_members.value = list(group.members)

    # -------------------------------------------------------------- users

    def create_user(self) -> None:
        try:
            self._admin()
            user = self.ctx.workspace.create_user(
                (self.new_name.value or "").strip(),
                password=self.new_password.value or "",
                role=self.new_role.value,
                email=(self.new_email.value or "").strip(),
            )
        except Exception as exc:  # Invalid (name, password length, email), Conflict
            self.user_out.object = alert_html(exc)
            return
        self.ctx.audit("user.create", user.name, role=user.role)
        self.user_out.object = status_html(
            f"Created user {user.name} ({user.role}).", "user-created"
        )
        self.new_name.value = self.new_password.value = self.new_email.value = ""
        self.refresh()

    def _other_user(self) -> Any:
        name = self.user_pick.value
        if not name:
            raise ValueError("field 'User': pick a user")
        if name == self.ctx.user:
            # The last admin locking themselves out would have no way back in.
            raise ValueError(f"{name} may not disable or change the role of their own account")
        user = self.ctx.workspace.get_user(name)
        if user is None:
            raise ValueError(f"field 'User': no user named {name!r}")
        return user

    def change_role(self) -> None:
        try:
            self._admin()
            user = self._other_user()
            updated = self.ctx.workspace.update_user(user.name, role=self.role_pick.value)
        except Exception as exc:  # Conflict: the last enabled admin
            self.user_out.object = alert_html(exc)
            return
        self.ctx.audit("user.update", updated.name, role=updated.role)
        self.user_out.object = status_html(f"{updated.name} is now {updated.role}.")
        self.refresh()

    def toggle_disabled(self) -> None:
        try:
            self._admin()
            user = self._other_user()
            updated = self.ctx.workspace.update_user(user.name, disabled=not user.disabled)
        except Exception as exc:
            self.user_out.object = alert_html(exc)
            return
        self.ctx.audit("user.update", updated.name, disabled=updated.disabled)
        state = "disabled (their sessions ended)" if updated.disabled else "enabled"
        self.user_out.object = status_html(f"{updated.name} is {state}.")
        self.refresh()

    # ------------------------------------------------------------- groups

    def create_group(self) -> None:
        try:
            self._admin()
            group = self.ctx.workspace.create_group(
                (self.group_name.value or "").strip(), list(self.group_members.value or [])
            )
        except Exception as exc:
            self.group_out.object = alert_html(exc)
            return
        self.ctx.audit("group.create", group.name, members=list(group.members))
        self.group_out.object = status_html(f"Created group {group.name}.", "group-created")
        self.group_name.value = ""
        self.refresh()
        self.group_pick.value = group.name

    def set_members(self) -> None:
        try:
            self._admin()
            if not self.group_pick.value:
                raise ValueError("field 'Group': pick a group")
            group = self.ctx.workspace.set_group_members(
                self.group_pick.value, list(self.group_members.value or [])
            )
        except Exception as exc:
            self.group_out.object = alert_html(exc)
            return
        self.ctx.audit("group.members", group.name, members=list(group.members))
        self.group_out.object = status_html(
            f"{group.name}: {', '.join(group.members) or 'no members'}."
        )
        self.refresh()

    # ------------------------------------------------------------ folders

    def create_folder(self) -> None:
        try:
            self._admin()
            folder = self.ctx.workspace.create_folder(
                (self.folder_name.value or "").strip(), owner=self.ctx.user
            )
        except Exception as exc:
            self.folder_out.object = alert_html(exc)
            return
        self.ctx.audit("folder.create", folder.name)
        self.folder_out.object = status_html(
            f"Created folder f/{folder.name}; you are its owner.", "folder-created"
        )
        self.folder_name.value = ""
        self.refresh()
        self.folder_pick.value = folder.name

    def set_right(self) -> None:
        right = None if self.right.value == NO_RIGHT else self.right.value
        folder_name, principal = self.folder_pick.value, self.principal.value
        try:
            self._admin()
            if not folder_name or not principal:
                raise ValueError("fields 'Folder' and 'Principal': pick both")
            folder = self.ctx.workspace.set_folder_right(folder_name, principal, right)
        except Exception as exc:
            self.folder_out.object = alert_html(exc)
            return
        self.ctx.audit("folder.right", folder.name, principal=principal, right=right)
        what = f"is {right}" if right else "has no right any more"
        self.folder_out.object = status_html(
            f"In f/{folder.name}, {principal} {what}.", "right-set"
        )
        self.refresh()

    def view(self) -> list[Any]:
        return [
            pn.pane.Markdown("#### Users"),
            self.users,
            pn.FlexBox(self.new_name, self.new_password, self.new_role, self.new_email),
            self.create_user_button,
            pn.FlexBox(self.user_pick, self.role_pick, self.role_button, self.disable_button),
            self.user_out,
            pn.pane.Markdown("#### Groups"),
            self.groups,
            pn.FlexBox(self.group_name, self.group_create),
            pn.FlexBox(self.group_pick, self.group_members, self.group_set),
            self.group_out,
            pn.pane.Markdown("#### Folders and rights"),
            self.folders,
            pn.FlexBox(self.folder_name, self.folder_create),
            pn.FlexBox(self.folder_pick, self.principal, self.right, self.right_button),
            self.folder_out,
        ]


def users_page(ctx: PageContext) -> pn.template.BaseTemplate:
    title = "Users, groups & folders"
    if ctx.workspace is None:
        return page(ctx, title, notice("The workspace is not available."), current="/users")
    if not ctx.can("admin", None):
        return page(ctx, title, notice(ADMINS_ONLY, kind="warning"), current="/users")
    view = UsersView(ctx)
    return page(ctx, title, *view.view(), current="/users")
