"""finops.yaml: validation that names the file and key, and the order settings win in."""

from __future__ import annotations

from pathlib import Path

import pytest

from finops.config import load_config, resolve_db_path
from finops.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def write(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "finops.yaml").write_text(text)
    return folder


def test_repository_config_is_valid() -> None:
    config = load_config(REPO)
    assert config.allocation.tag_keys == ("team", "Team", "owner")
    from finops.demo import DEMO_TEAMS

    # The demo's finops.yaml names exactly the demo organisation's teams and cost centres.
    assert [(t.name, t.cost_centre, t.business_unit) for t in config.teams] == [
        (t.name, t.cost_centre, t.business_unit) for t in DEMO_TEAMS
    ]


def test_typo_in_a_key_is_an_error_naming_file_and_key(tmp_path: Path) -> None:
    folder = write(tmp_path, "allocation:\n  tag_kee: team\n")
    with pytest.raises(ConfigError) as caught:
        load_config(folder)
    assert str(folder / "finops.yaml") in str(caught.value)
    assert "allocation.tag_kee: unknown key (check its spelling)" in str(caught.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("currency: EURO\n", "currency: Value error, 'EURO' is not an ISO 4217 currency code"),
        (
            "time_zone: Mars/Olympus\n",
            "time_zone: Value error, 'Mars/Olympus' is not an IANA time zone",
        ),
        (
            "fiscal_year_start_month: 13\n",
            "fiscal_year_start_month: Input should be less than or equal to 12",
        ),
        ("teams:\n  - cost_centre: CC-1\n", "teams.0.name: Field required"),
        ("- just\n- a list\n", "expected a mapping of settings, found list"),
        ("allocation: [\n", "not valid YAML"),
    ],
)
def test_invalid_values_are_explained(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=r"finops\.yaml") as caught:
        load_config(write(tmp_path, text))
    assert message in str(caught.value)


def test_no_file_means_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FINOPS_CONFIG", raising=False)
    config = load_config()
    assert config.source_file is None
    assert config.currency == "USD"


def test_db_path_precedence_flag_then_env_then_file_then_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FINOPS_DB", raising=False)
    monkeypatch.chdir(tmp_path)
    assert (
        resolve_db_path(load_config(write(tmp_path / "none", "")))
        == tmp_path / "none" / ".finops/warehouse.duckdb"
    )
    config = load_config(write(tmp_path / "conf", "warehouse:\n  path: data/wh.duckdb\n"))
    assert resolve_db_path(config) == tmp_path / "conf" / "data/wh.duckdb"
    monkeypatch.setenv("FINOPS_DB", str(tmp_path / "env.duckdb"))
    assert resolve_db_path(config) == tmp_path / "env.duckdb"
    assert resolve_db_path(config, tmp_path / "flag.duckdb") == tmp_path / "flag.duckdb"


def test_config_folder_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FINOPS_CONFIG", str(write(tmp_path / "env", "organisation: From env\n")))
    assert load_config().organisation == "From env"
    assert (
        load_config(write(tmp_path / "flag", "organisation: From flag\n")).organisation
        == "From flag"
    )
    monkeypatch.setenv("FINOPS_CONFIG", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="no such configuration file"):
        load_config()


def test_source_manifests_are_validated_with_file_and_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from finops.config import load_sources

    folder = write(tmp_path, "")
    manifests = folder / "collectors"
    manifests.mkdir()
    (manifests / "a.yaml").write_text(
        "sources:\n  - {name: aws, kind: focus, uri: x, schedul: daily}\n"
    )
    with pytest.raises(
        ConfigError, match=r"a\.yaml: 1 invalid setting\(s\)\n  sources\.0\.schedul: unknown key"
    ):
        load_sources(load_config(folder))

    (manifests / "a.yaml").write_text("sources:\n  - {name: aws, kind: cur-1, uri: x}\n")
    with pytest.raises(ConfigError, match=r"sources\.0\.kind: Input should be 'focus'"):
        load_sources(load_config(folder))

    (manifests / "a.yaml").write_text(
        "sources:\n  - {name: aws, kind: focus, uri: 's3://${BILLING_BUCKET}/focus'}\n"
    )
    monkeypatch.delenv("BILLING_BUCKET", raising=False)
    with pytest.raises(
        ConfigError,
        match=r"sources\.0\.uri: Value error, environment variable\(s\) BILLING_BUCKET not set",
    ):
        load_sources(load_config(folder))
    monkeypatch.setenv("BILLING_BUCKET", "acme-billing")
    (source,) = load_sources(load_config(folder))
    assert source.uri == "s3://acme-billing/focus"

    (manifests / "b.yaml").write_text("sources:\n  - {name: aws, kind: openmetrics, uri: y}\n")
    with pytest.raises(ConfigError, match=r"b\.yaml: source 'aws' is also declared in .*a\.yaml"):
        load_sources(load_config(folder))


def test_repository_ships_valid_demo_manifests() -> None:
    from finops.config import load_sources

    names = [s.name for s in load_sources(load_config(REPO))]
    assert names == ["aws-cur", "gcp-billing", "billing", "dcgm", "nvidia-smi"]
