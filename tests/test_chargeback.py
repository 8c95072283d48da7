"""Charge-back by direct attribution: groups add up to the bill, to the cent."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from finops.analytics.chargeback import chargeback, parse_dimensions, period_total
from finops.collectors.focus import read_focus
from finops.config import AllocationSettings, Team
from finops.errors import ConfigError
from finops.periods import parse_period
from finops.warehouse import Warehouse
from tests.conftest import JUNE_ROWS, MAY_ROWS, row, write_csv

ALLOCATION = AllocationSettings(tag_key="team", tag_aliases=("Team", "owner"))
TEAMS = (Team(name="ml-platform", aliases=("mlplatform",)), Team(name="vision"))


@pytest.fixture
def loaded(tmp_path: Path, warehouse: Warehouse) -> Warehouse:
    extra = [row("06-30", "3.00", tags={"owner": "MLPlatform"})]  # a team alias, other casing
    path = write_csv(tmp_path / "bill.csv", [*MAY_ROWS, *JUNE_ROWS, *extra])
    warehouse.ingest_cost(
        lambda: read_focus(str(path)), source="aws", collector="focus", uri=str(path)
    )
    return warehouse


def spend(warehouse: Warehouse, period: str, by: str = "team", cost: str = "billed") -> dict:
    dims = parse_dimensions(by, ALLOCATION, TEAMS)
    with warehouse.reader() as conn:
        table = chargeback(conn, parse_period(period), dims, cost=cost)  # type: ignore[arg-type]
    return {tuple(r[d.name] for d in dims): r["cost"] for r in table.to_pylist()}


def test_team_by_tag_with_aliases_normalised_values_and_unallocated(loaded: Warehouse) -> None:
    assert spend(loaded, "2026-05") == {
        ("vision",): Decimal("150.35"),  # team=vision 100.10 + Team=Vision 50.25
        ("ml-platform",): Decimal("20.00"),  # owner=ml_platform
        ("(unallocated)",): Decimal("4.66"),  # a credit of -5.35 and an env-only row of 10.01
    }


def test_effective_cost_basis(loaded: Warehouse) -> None:
    assert spend(loaded, "2026-05", cost="effective") == {
        ("vision",): Decimal("140.30"),
        ("ml-platform",): Decimal("25.00"),
        ("(unallocated)",): Decimal("4.66"),
    }


def test_team_alias_from_config_maps_to_the_team(loaded: Warehouse) -> None:
    assert spend(loaded, "2026-06") == {
        ("vision",): Decimal("200.00"),
        ("ml-platform",): Decimal("3.00"),
        ("search",): Decimal("0.99"),
    }


def test_groups_add_up_to_the_bill_for_every_period(loaded: Warehouse) -> None:
    for period in (
        "2026-05",
        "2026-06",
        "2026-Q2",
        "2026-05-01..2026-06-30",
        "2026-05-03..2026-05-03",
    ):
        for by in ("team", "service", "tag:env", "team,charge-category"):
            with loaded.reader() as conn:
                table = chargeback(
                    conn, parse_period(period), parse_dimensions(by, ALLOCATION, TEAMS)
                )
                (bill,) = period_total(conn, parse_period(period)).values()
            assert sum(table.column("exact_cost").to_pylist()) == bill, (period, by)


def test_quarter_and_date_range_select_the_right_rows(loaded: Warehouse) -> None:
    assert sum(spend(loaded, "2026-Q2").values()) == Decimal("379.00")
    assert sum(spend(loaded, "2026-Q3").values()) == Decimal("0")
    # Both ends included: 3 May holds 20.00 and the -5.35 credit.
    assert spend(loaded, "2026-05-03..2026-05-03") == {
        ("ml-platform",): Decimal("20.00"),
        ("(unallocated)",): Decimal("-5.35"),
    }
    assert sum(spend(loaded, "2026-05-31..2026-06-01").values()) == Decimal("210.01")


def test_raw_tag_dimension_and_plain_dimensions(loaded: Warehouse) -> None:
    assert spend(loaded, "2026-05", "tag:env") == {
        ("prod",): Decimal("100.10"),
        ("dev",): Decimal("10.01"),
        ("(none)",): Decimal("64.90"),
    }
    assert spend(loaded, "2026-05", "account,charge-category") == {
        ("012345678901", "Usage"): Decimal("180.36"),
        ("012345678901", "Credit"): Decimal("-5.35"),
    }


def test_unknown_dimension_is_a_clear_error() -> None:
    with pytest.raises(
        ConfigError, match=r"--by 'colour' not understood: use one of team, tag:KEY, account"
    ):
        parse_dimensions("team,colour", ALLOCATION, TEAMS)
