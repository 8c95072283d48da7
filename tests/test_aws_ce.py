"""AWS Cost Explorer: daily totals by tag and service, through moto's Cost Explorer."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path

import boto3
import pytest
import requests
from moto import mock_aws

from finops.collectors.aws_ce import read_cost_explorer
from finops.warehouse import Warehouse

QUEUE = "http://motoapi.amazonaws.com/moto-api/static/ce/cost-and-usage-results"


def group(tag: str, service: str, unblended: str, amortized: str) -> dict:
    return {
        "Keys": [f"team${tag}", service],
        "Metrics": {
            "UnblendedCost": {"Amount": unblended, "Unit": "USD"},
            "AmortizedCost": {"Amount": amortized, "Unit": "USD"},
        },
    }


def day(start: str, end: str, groups: list[dict], estimated: bool = False) -> dict:
    return {
        "TimePeriod": {"Start": start, "End": end},
        "Total": {},
        "Groups": groups,
        "Estimated": estimated,
    }


@pytest.fixture
def cost_explorer(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        # moto does not compute costs: the answers are queued, one per call, in order.
        pages = [
            {
                "ResultsByTime": [
                    day(
                        "2026-05-30",
                        "2026-05-31",
                        [
                            group(
                                "vision",
                                "Amazon Elastic Compute Cloud - Compute",
                                "100.10",
                                "90.05",
                            ),
                            group("", "Amazon Simple Storage Service", "5.35", "5.35"),
                        ],
                    ),
                ],
                "NextPageToken": "page-2",
            },
            {
                "ResultsByTime": [
                    day(
                        "2026-05-31",
                        "2026-06-01",
                        [
                            group("search", "Amazon SageMaker", "20.00", "25.00"),
                        ],
                    ),
                    day(
                        "2026-06-01",
                        "2026-06-02",
                        [
                            group(
                                "vision", "Amazon Elastic Compute Cloud - Compute", "48.00", "48.00"
                            ),
                        ],
                        estimated=True,
                    ),
                ],
            },
        ]
        for page in pages:
            assert requests.post(QUEUE, json={"results": [page]}, timeout=5).status_code == 201
        yield


def test_daily_totals_by_tag_and_service_to_the_cent(cost_explorer: None, tmp_path: Path) -> None:
    warehouse = Warehouse(tmp_path / "wh.duckdb")
    account = boto3.client("sts").get_caller_identity()["Account"]

    result = warehouse.ingest_cost(
        lambda: read_cost_explorer(start=date(2026, 5, 30), end=date(2026, 6, 2)),
        source="aws-ce",
        collector="aws-ce",
        uri="ce",
    )

    assert [(p.date().isoformat()) for p in result.periods] == ["2026-05-01", "2026-06-01"]
    assert (result.rows, result.billed_cost, result.effective_cost) == (
        4,
        Decimal("173.45"),
        Decimal("168.40"),
    )
    assert "days still estimated by AWS (not final): 1" in result.notes
    rows = warehouse.query(
        """
        SELECT strftime("ChargePeriodStart", '%Y-%m-%d') AS day, "Tags"['team'] AS team,
               "ServiceCategory" AS category, "BilledCost" AS billed, "SubAccountId" AS account,
               "x_CostExplorerGrain" AS grain
        FROM cost ORDER BY day, billed
        """
    ).to_pylist()
    assert [(r["day"], r["team"], r["category"], r["billed"]) for r in rows] == [
        ("2026-05-30", None, "Storage", Decimal("5.35")),
        ("2026-05-30", "vision", "Compute", Decimal("100.10")),
        ("2026-05-31", "search", "AI and Machine Learning", Decimal("20.00")),
        ("2026-06-01", "vision", "Compute", Decimal("48.00")),
    ]
    assert {r["account"] for r in rows} == {account}
    assert {r["grain"] for r in rows} == {"daily by tag and service"}


def test_no_costs_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    from finops.errors import IngestError

    with mock_aws():
        requests.post(QUEUE, json={"results": [{"ResultsByTime": []}]}, timeout=5)
        with pytest.raises(
            IngestError, match="Cost Explorer returned no costs between 2026-05-01 and 2026-06-01"
        ):
            read_cost_explorer(
                start=date(2026, 5, 1), end=date(2026, 6, 1), account_id="012345678901"
            )
