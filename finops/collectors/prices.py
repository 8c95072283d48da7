"""Hourly prices per instance type, region and purchase option, for savings estimates.

Three sources here (Google Cloud's list prices are in `gcp_prices`):
- `observed_prices`: what the bill itself says: amortised cost per hour of usage
  (sum EffectiveCost / sum PricingQuantity of hourly usage rows) per provider, region,
  instance type and purchase option; list prices (ListUnitPrice) as `OnDemand`. Always
  available, and already net of discounts.
- `aws_spot_prices`: EC2's spot price history (`describe_spot_price_history`): the latest
  price per region and instance type, averaged over the region's availability zones.
- `aws_ondemand_prices`: public on-demand prices from the AWS Price List API.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import duckdb
import pyarrow as pa

from finops.errors import IngestError
from finops.warehouse import PriceList


def observed_prices(
    conn: duckdb.DuckDBPyConnection, *, since: datetime, until: datetime, as_of: date
) -> PriceList:
    """Effective hourly prices seen in billing between `since` and `until`."""
    table = conn.sql(
        """
        WITH hourly AS (
            SELECT "ProviderName" AS provider, "RegionId" AS region, "x_InstanceType" AS instance_type,
                   coalesce("x_PurchaseOption", "PricingCategory") AS purchase_option,
                   "EffectiveCost" AS cost, "PricingQuantity" AS hours, "ListUnitPrice" AS list_price,
                   "BillingCurrency" AS currency
            FROM cost_resolved
            WHERE "ChargeCategory" = 'Usage' AND "PricingUnit" = 'Hours'
              AND "x_InstanceType" IS NOT NULL AND "RegionId" IS NOT NULL
              AND "CommitmentDiscountStatus" IS DISTINCT FROM 'Unused'
              AND "PricingQuantity" > 0
              AND "ChargePeriodStart" >= ? AND "ChargePeriodStart" < ?
        )
        SELECT provider, region, instance_type, purchase_option,
               CAST(sum(cost) / sum(hours) AS DECIMAL(38,10)) AS hourly_price,
               any_value(currency) AS currency,
               json_object('hours', sum(hours), 'basis', 'effective cost per hour') AS details
        FROM hourly GROUP BY ALL HAVING sum(cost) > 0
        UNION ALL
        SELECT provider, region, instance_type, 'OnDemand (list)',
               max(list_price), any_value(currency), json_object('basis', 'list unit price')
        FROM hourly WHERE list_price IS NOT NULL GROUP BY ALL
        ORDER BY provider, region, instance_type, purchase_option
        """,
        params=[since, until],
    ).to_arrow_table()
    return PriceList(source="billing", as_of=as_of, table=table)


def aws_spot_prices(
    *,
    regions: Sequence[str],
    instance_types: Sequence[str],
    now: datetime,
    lookback: timedelta = timedelta(days=1),
    session: Any = None,
) -> PriceList:
    """The newest spot price per region and instance type (mean over availability zones)."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    session = session or boto3.Session()
    config = Config(retries={"mode": "adaptive", "max_attempts": 8})
    rows: list[tuple[str, str, str, Decimal, datetime]] = []
    for region in regions:
        ec2 = session.client("ec2", region_name=region, config=config)
        pages = ec2.get_paginator("describe_spot_price_history").paginate(
            InstanceTypes=list(instance_types),
            ProductDescriptions=["Linux/UNIX"],
            StartTime=now - lookback,
            EndTime=now,
        )
        try:
            for page in pages:
                rows += [
                    (
                        region,
                        s["InstanceType"],
                        s["AvailabilityZone"],
                        Decimal(s["SpotPrice"]),
                        s["Timestamp"],
                    )
                    for s in page["SpotPriceHistory"]
                ]
        except (BotoCoreError, ClientError) as exc:
            raise IngestError(f"ec2.describe_spot_price_history in {region}: {exc}") from None
    history = pa.table(
        {
            "region": [r[0] for r in rows],
            "instance_type": [r[1] for r in rows],
            "zone": [r[2] for r in rows],
            "price": pa.array([r[3] for r in rows], pa.decimal128(38, 10)),
            "ts": pa.array([r[4] for r in rows], pa.timestamp("us", tz="UTC")),
        }
    )
    conn = duckdb.connect()
    conn.register("history", history)
    table = conn.sql(
        """
        WITH latest AS (
            SELECT region, instance_type, zone, arg_max(price, ts) AS price
            FROM history GROUP BY ALL
        )
        SELECT 'AWS' AS provider, region, instance_type, 'Spot' AS purchase_option,
               CAST(avg(price) AS DECIMAL(38,10)) AS hourly_price, 'USD' AS currency,
               json_object('zones', count(*), 'basis', 'latest spot price, mean of zones') AS details
        FROM latest GROUP BY ALL ORDER BY region, instance_type
        """
    ).to_arrow_table()
    conn.close()
    return PriceList(source="aws-spot", as_of=now.date(), table=table)


def aws_ondemand_prices(
    *,
    regions: Sequence[str],
    instance_types: Sequence[str],
    as_of: date,
    session: Any = None,
) -> PriceList:
    """Public on-demand Linux prices from the AWS Price List API (`pricing.get_products`).

    One query per region and instance type (shared tenancy, no pre-installed software,
    capacity `Used`); the answer's OnDemand term gives the hourly USD price.
    """
    import json

    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    session = session or boto3.Session()
    # The Price List API answers from us-east-1 (and a few others) for every region.
    pricing = session.client(
        "pricing",
        region_name="us-east-1",
        config=Config(retries={"mode": "adaptive", "max_attempts": 8}),
    )
    rows: list[dict[str, object]] = []
    for region in regions:
        for instance_type in instance_types:
            filters = [
                {"Type": "TERM_MATCH", "Field": field, "Value": value}
                for field, value in (
                    ("regionCode", region),
                    ("instanceType", instance_type),
                    ("operatingSystem", "Linux"),
                    ("tenancy", "Shared"),
                    ("preInstalledSw", "NA"),
                    ("capacitystatus", "Used"),
                )
            ]
            try:
                pages = pricing.get_paginator("get_products").paginate(
                    ServiceCode="AmazonEC2", Filters=filters
                )
                products = [json.loads(item) for page in pages for item in page["PriceList"]]
            except (BotoCoreError, ClientError) as exc:
                raise IngestError(
                    f"pricing.get_products for {instance_type} in {region}: {exc}"
                ) from None
            for product in products:
                for term in product.get("terms", {}).get("OnDemand", {}).values():
                    for dimension in term["priceDimensions"].values():
                        if dimension.get("unit") != "Hrs":
                            continue
                        rows.append(
                            {
                                "provider": "AWS",
                                "region": region,
                                "instance_type": instance_type,
                                "purchase_option": "OnDemand (list)",
                                "hourly_price": Decimal(dimension["pricePerUnit"]["USD"]),
                                "currency": "USD",
                                "details": json.dumps(
                                    {"sku": product["product"]["sku"], "basis": "AWS Price List"}
                                ),
                            }
                        )
    schema = pa.schema(
        [
            ("provider", pa.string()),
            ("region", pa.string()),
            ("instance_type", pa.string()),
            ("purchase_option", pa.string()),
            ("hourly_price", pa.decimal128(38, 10)),
            ("currency", pa.string()),
            ("details", pa.string()),
        ]
    )
    return PriceList(source="aws-price-list", as_of=as_of, table=pa.Table.from_pylist(rows, schema))
