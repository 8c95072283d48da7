"""Prices for savings estimates: observed in billing, and EC2 spot history through moto."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import boto3
from botocore.stub import Stubber

from finops.collectors.focus import read_focus
from finops.collectors.prices import aws_ondemand_prices, aws_spot_prices, observed_prices
from finops.warehouse import Warehouse
from tests.conftest import row, write_csv

NOW = datetime(2026, 5, 31, tzinfo=UTC)


def hourly(day: str, cost: str, hours: str, option: str, list_price: str = "") -> dict:
    return row(
        day,
        cost,
        RegionId="us-east-1",
        x_InstanceType="p4d.24xlarge",
        x_PurchaseOption=option,
        PricingUnit="Hours",
        PricingQuantity=hours,
        ListUnitPrice=list_price,
    )


def test_observed_prices_are_amortised_cost_per_hour(tmp_path: Path) -> None:
    warehouse = Warehouse(tmp_path / "wh.duckdb")
    bill = [
        hourly("05-01", "786.24", "24", "OnDemand", "32.7726"),  # 32.76 an hour
        hourly("05-02", "393.12", "12", "OnDemand", "32.7726"),
        hourly("05-01", "235.92", "24", "Spot"),  # 9.83 an hour
        hourly("05-01", "0", "24", "Reserved"),  # zero-cost rows do not make a price
    ]
    path = write_csv(tmp_path / "bill.csv", bill)
    warehouse.ingest_cost(lambda: read_focus(str(path)), source="aws", collector="focus", uri="b")

    with warehouse.reader() as conn:
        prices = observed_prices(
            conn, since=datetime(2026, 5, 1, tzinfo=UTC), until=NOW, as_of=date(2026, 5, 31)
        )
    stored = warehouse.store_prices(prices)

    assert stored == 3
    rows = warehouse.query(
        "SELECT purchase_option, hourly_price, source, as_of FROM prices ORDER BY purchase_option"
    ).to_pylist()
    assert [(r["purchase_option"], r["hourly_price"]) for r in rows] == [
        ("OnDemand", Decimal("32.76")),
        ("OnDemand (list)", Decimal("32.7726")),
        ("Spot", Decimal("9.83")),
    ]
    assert {(r["source"], r["as_of"]) for r in rows} == {("billing", date(2026, 5, 31))}
    # A refresh of the same day replaces, never duplicates.
    assert warehouse.store_prices(prices) == 3
    assert warehouse.query("SELECT count(*) AS n FROM prices").column("n")[0].as_py() == 3


def test_spot_price_is_the_latest_per_zone_averaged_over_zones(tmp_path: Path) -> None:
    # moto answers spot history with fixed placeholder prices, so EC2's answer is stubbed
    # at the botocore boundary with real-shaped history instead.
    ec2 = boto3.client(
        "ec2", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    stubber = Stubber(ec2)
    history = [
        ("us-east-1a", "9.8300", datetime(2026, 5, 30, 23, tzinfo=UTC)),
        ("us-east-1a", "12.0000", datetime(2026, 5, 30, 9, tzinfo=UTC)),  # older: superseded
        ("us-east-1b", "10.0300", datetime(2026, 5, 30, 20, tzinfo=UTC)),
    ]
    stubber.add_response(
        "describe_spot_price_history",
        {
            "SpotPriceHistory": [
                {
                    "AvailabilityZone": zone,
                    "InstanceType": "p4d.24xlarge",
                    "SpotPrice": price,
                    "ProductDescription": "Linux/UNIX",
                    "Timestamp": ts,
                }
                for zone, price, ts in history
            ]
        },
    )

    class Session:
        def client(self, service: str, **kwargs: object) -> object:
            assert service == "ec2"
            return ec2

    with stubber:
        prices = aws_spot_prices(
            regions=["us-east-1"], instance_types=["p4d.24xlarge"], now=NOW, session=Session()
        )
    (row,) = prices.table.to_pylist()
    assert (row["region"], row["instance_type"], row["purchase_option"]) == (
        "us-east-1",
        "p4d.24xlarge",
        "Spot",
    )
    assert row["hourly_price"] == Decimal("9.93")  # (9.83 + 10.03) / 2
    warehouse = Warehouse(tmp_path / "wh.duckdb")
    assert warehouse.store_prices(prices) == 1
    stored = warehouse.query("SELECT source, as_of FROM prices").to_pylist()
    assert stored == [{"source": "aws-spot", "as_of": date(2026, 5, 31)}]


def test_on_demand_prices_from_the_price_list_api(tmp_path: Path) -> None:
    # moto has no Price List API: the answer is stubbed at the botocore boundary, shaped
    # like the real one (each product a JSON string with its OnDemand term).
    import json

    pricing = boto3.client(
        "pricing", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    stubber = Stubber(pricing)
    product = {
        "product": {
            "sku": "ABCD1234",
            "attributes": {"instanceType": "p4d.24xlarge", "regionCode": "us-east-1"},
        },
        "terms": {
            "OnDemand": {
                "ABCD1234.JRTCKXETXF": {
                    "priceDimensions": {
                        "ABCD1234.JRTCKXETXF.6YS6EN2CT7": {
                            "unit": "Hrs",
                            "pricePerUnit": {"USD": "32.7726000000"},
                            "description": "$32.7726 per On Demand Linux p4d.24xlarge Instance Hour",
                        }
                    }
                }
            }
        },
    }
    stubber.add_response(
        "get_products", {"PriceList": [json.dumps(product)], "FormatVersion": "aws_v1"}
    )

    class Session:
        def client(self, service: str, **kwargs: object) -> object:
            assert service == "pricing"
            return pricing

    with stubber:
        prices = aws_ondemand_prices(
            regions=["us-east-1"],
            instance_types=["p4d.24xlarge"],
            as_of=date(2026, 5, 31),
            session=Session(),
        )
    (row,) = prices.table.to_pylist()
    assert (row["instance_type"], row["purchase_option"], row["hourly_price"]) == (
        "p4d.24xlarge",
        "OnDemand (list)",
        Decimal("32.7726"),
    )
    assert json.loads(row["details"])["sku"] == "ABCD1234"
    assert Warehouse(tmp_path / "wh.duckdb").store_prices(prices) == 1
