"""Who is looking: the viewer's role and teams, from OIDC, a proxy's header, or local mode.

Pure functions of the configured `access:` section and what Streamlit knows about the
request (its `st.user` claims, its headers), so the rules are tested without a browser:

- local mode: one user with the admin role (the app says so on every page);
- oidc mode: the signed-in user's e-mail (else name) and its groups claim;
- header mode: the user named by the trusted header an identity-aware proxy sets.

A user is looked up in `access.users` (case-insensitive), then every group they belong to
in `access.groups`; the widest role wins and the teams add up. Nobody matched: no access.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from finops.config import AccessGrant, AccessSettings, Config, Role
from finops.errors import ConfigError

_WIDTH: dict[str, int] = {"lead": 0, "finance": 1, "admin": 2}


@dataclass(frozen=True)
class Viewer:
    """The person looking at the app, and what they may see and change."""

    name: str
    role: Role
    teams: tuple[str, ...] | None
    """The teams whose figures they see; None: every team."""
    mode: str

    @property
    def sees_everything(self) -> bool:
        return self.teams is None

    def may_see(self, team: str | None) -> bool:
        return self.teams is None or team in self.teams

    def may_change(self, team: str | None) -> bool:
        """Accept, snooze or dismiss a recommendation of `team` (None: an org-wide one)."""
        if self.role == "admin":
            return True
        return (
            self.role == "lead"
            and team is not None
            and self.teams is not None
            and (team in self.teams)
        )


@dataclass(frozen=True)
class NoAccess:
    """Why the app shows nothing: not signed in, or not someone finops.yaml names."""

    reason: str
    needs_login: bool = False


LOCAL_VIEWER = Viewer("local user", "admin", None, "local")


def check_teams(config: Config) -> None:
    """Every team `access` names is one of `teams` (a typo would hide a team's figures)."""
    known = {team.name for team in config.teams}
    if not known:
        return
    where = config.source_file or "finops.yaml"
    for section, grants in (("users", config.access.users), ("groups", config.access.groups)):
        for who, grant in grants.items():
            unknown = [t for t in grant.teams if t not in known]
            if unknown:
                raise ConfigError(
                    f"{where}: access.{section}.{who}.teams: not a team in `teams`: "
                    f"{', '.join(unknown)} (teams: {', '.join(sorted(known))})"
                )


def resolve_viewer(
    settings: AccessSettings,
    *,
    user: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Viewer | NoAccess:
    """The viewer of this request, or why there is none."""
    if settings.mode == "local":
        return LOCAL_VIEWER
    if settings.mode == "oidc":
        if not user or not user.get("is_logged_in"):
            return NoAccess("Sign in to see the figures.", needs_login=True)
        name = str(user.get("email") or user.get("name") or "")
        groups = _as_list(user.get(settings.groups_claim))
    else:
        lowered = {k.lower(): v for k, v in (headers or {}).items()}
        name = lowered.get(settings.header.lower(), "").strip()
        if not name:
            return NoAccess(
                f"No {settings.header} header: open the app through the identity-aware proxy."
            )
        raw = lowered.get(settings.groups_header.lower(), "") if settings.groups_header else ""
        groups = [g.strip() for g in raw.split(",") if g.strip()]
    grants = _grants(settings, name, groups)
    if not grants:
        return NoAccess(
            f"{name or 'This user'} has no access: ask an admin to add you to finops.yaml."
        )
    role = max((g.role for g in grants), key=lambda r: _WIDTH[r])
    if role != "lead":
        return Viewer(name, role, None, settings.mode)
    teams = tuple(dict.fromkeys(t for g in grants for t in g.teams))
    return Viewer(name, role, teams, settings.mode)


def _grants(settings: AccessSettings, name: str, groups: list[str]) -> list[AccessGrant]:
    users = {k.lower(): v for k, v in settings.users.items()}
    found = [users[name.lower()]] if name.lower() in users else []
    return found + [settings.groups[g] for g in groups if g in settings.groups]


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v) for v in value]
