"""Who sees what: the viewer resolved from local mode, OIDC claims or a proxy's header."""

from __future__ import annotations

from pathlib import Path

import pytest

from finops.app.access import NoAccess, Viewer, check_teams, resolve_viewer
from finops.config import AccessSettings, Config, load_config
from finops.errors import ConfigError

SETTINGS = {
    "users": {
        "Ana@Example.com": {"role": "lead", "teams": ["vision"]},
        "cfo@example.com": {"role": "finance"},
    },
    "groups": {
        "nlp-leads": {"role": "lead", "teams": ["nlp-research"]},
        "finops-admins": {"role": "admin"},
    },
}


def access(mode: str, **more: object) -> AccessSettings:
    return AccessSettings.model_validate({"mode": mode, **SETTINGS, **more})


def test_local_mode_is_one_admin_who_sees_every_team() -> None:
    viewer = resolve_viewer(AccessSettings())
    assert viewer == Viewer("local user", "admin", None, "local")


def test_oidc_user_is_found_case_insensitively_and_groups_add_teams() -> None:
    user = {"is_logged_in": True, "email": "ana@example.com", "groups": ["nlp-leads"]}
    viewer = resolve_viewer(access("oidc"), user=user)
    assert viewer == Viewer("ana@example.com", "lead", ("vision", "nlp-research"), "oidc")
    assert viewer.may_change("vision")
    assert not viewer.may_change("search-ranking")
    assert not viewer.may_change(None)  # organisation-wide: admins only


def test_the_widest_role_wins() -> None:
    user = {"is_logged_in": True, "email": "ana@example.com", "groups": ["finops-admins"]}
    viewer = resolve_viewer(access("oidc"), user=user)
    assert isinstance(viewer, Viewer)
    assert (viewer.role, viewer.teams, viewer.may_change(None)) == ("admin", None, True)


def test_finance_sees_everything_and_changes_nothing() -> None:
    viewer = resolve_viewer(access("oidc"), user={"is_logged_in": True, "email": "cfo@example.com"})
    assert isinstance(viewer, Viewer)
    assert viewer.sees_everything
    assert not viewer.may_change("vision")


def test_oidc_asks_a_signed_out_user_to_sign_in() -> None:
    denied = resolve_viewer(access("oidc"), user={"is_logged_in": False})
    assert denied == NoAccess("Sign in to see the figures.", needs_login=True)


def test_header_mode_reads_the_proxys_headers() -> None:
    settings = access("header", header="X-Auth-Email", groups_header="X-Auth-Groups")
    headers = {"x-auth-email": "bob@example.com", "x-auth-groups": "nlp-leads, other"}
    viewer = resolve_viewer(settings, headers=headers)
    assert viewer == Viewer("bob@example.com", "lead", ("nlp-research",), "header")
    missing = resolve_viewer(settings, headers={})
    assert isinstance(missing, NoAccess)
    assert "X-Auth-Email" in missing.reason


def test_someone_not_named_has_no_access() -> None:
    denied = resolve_viewer(access("header"), headers={"X-Forwarded-Email": "eve@example.com"})
    assert isinstance(denied, NoAccess)
    assert "eve@example.com has no access" in denied.reason


def test_a_lead_without_teams_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "finops.yaml").write_text("access:\n  users:\n    a@b.c: {role: lead}\n")
    with pytest.raises(ConfigError, match=r"access\.users\.a@b\.c.*a lead needs `teams`"):
        load_config(tmp_path)


def test_an_unknown_team_in_access_names_the_key() -> None:
    config = Config.model_validate(
        {
            "teams": [{"name": "vision"}],
            "access": {"users": {"a@b.c": {"role": "lead", "teams": ["visoin"]}}},
        }
    )
    with pytest.raises(
        ConfigError, match=r"access\.users\.a@b\.c\.teams: not a team in `teams`: visoin"
    ):
        check_teams(config)
