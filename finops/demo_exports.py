"""The demo's billing as the providers deliver it: an AWS CUR 2.0 Data Export and a Google
Cloud detailed billing export, built from the demo's FOCUS rows.

`finops.demo` models the organisation's charges as FOCUS rows; this module writes them in
the providers' own formats, which `finops demo` then ingests through the real collectors
(`collectors.aws_cur`, `collectors.gcp_billing`). Amounts are carried over exactly, so
each month's billed and effective totals are the ones the demo models. What changes is
what the formats themselves change:

AWS (CUR 2.0, `line_item_line_item_type` by FOCUS row):
- usage: `Usage` (pricing_term OnDemand or Spot), unblended = billed cost, public
  on-demand cost = list cost;
- reserved-instance usage: `DiscountedUsage`, unblended 0, reservation_effective_cost;
- savings-plan usage: `SavingsPlanCoveredUsage` (unblended = the contracted on-demand
  cost, savings_plan_effective_cost) and its `SavingsPlanNegation` (minus that cost);
- a commitment's unused hours are no line of their own in CUR: they sum into its monthly
  fee line (`RIFee`'s reservation_unused_recurring_fee, `SavingsPlanRecurringFee`'s
  total commitment less used commitment), which the collector turns into the unused
  effective cost; so unused commitment shows on the fee's month, not day by day;
- credits `Credit`, refunds `Refund` (a CUR refund says not which period it corrects, so
  the demo's correction arrives as an ordinary credit), tax `Tax`;
- EBS volumes are product AmazonEC2 (as AWS bills them), so they read as EC2 spend;
- an instance's name is its `Name` tag, as the EC2 console shows it.

Google Cloud (one export record per usage row, BigQuery export schema):
- committed-use usage is billed at its on-demand cost with a COMMITTED_USAGE_DISCOUNT
  credit of the same amount, and the commitment's monthly fee is its own record
  ("Commitment v1: ..."): the export does not amortise commitments, so the fee, unused
  part included, stays with the commitment rather than with the teams using it;
- the monthly promotional credit rides on a zero-cost record of its service.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

PRODUCT_CODES: dict[str, str] = {
    "Amazon Elastic Compute Cloud": "AmazonEC2",
    "Amazon Elastic Block Store": "AmazonEC2",
    "Amazon SageMaker": "AmazonSageMaker",
    "Amazon Relational Database Service": "AmazonRDS",
    "Amazon Elastic Kubernetes Service": "AmazonEKS",
    "Amazon Simple Storage Service": "AmazonS3",
    "AWS Data Transfer": "AWSDataTransfer",
}
"""The demo's AWS services and their CUR product codes."""

GCP_SERVICE_IDS: dict[str, str] = {
    "Compute Engine": "6F81-5844-456A",
    "Kubernetes Engine": "CCD8-9BF1-090E",
    "Vertex AI": "C7E2-9256-1C43",
    "Cloud Storage": "95FF-2EF5-5EA1",
    "BigQuery": "24E6-581D-38E5",
    "Networking": "E505-1604-58F8",
}


def _values(mapping: dict[str, str]) -> str:
    return ", ".join(
        "('{}', '{}')".format(k.replace("'", "''"), v.replace("'", "''"))
        for k, v in mapping.items()
    )


def _connect() -> duckdb.DuckDBPyConnection:
    # One thread keeps the row order, and so the files, the same for the same data.
    conn = duckdb.connect(config={"threads": 1})
    conn.execute("SET TimeZone = 'UTC'")
    return conn


_TAGS = 'CAST(CAST(f."Tags" AS JSON) AS MAP(VARCHAR, VARCHAR))'

_AWS_SQL = f"""
WITH product(service, code) AS (VALUES {_values(PRODUCT_CODES)}),
f AS (
    SELECT row_number() OVER () AS idx, f.*,
           coalesce(p.code, replace(CAST(f."ServiceName" AS VARCHAR), ' ', '')) AS product_code,
           CASE WHEN f."Tags" IS NULL THEN NULL ELSE {_TAGS} END AS tag_map
    FROM focus AS f LEFT JOIN product AS p ON p.service = f."ServiceName"
),
unused AS (
    SELECT "CommitmentDiscountId" AS id, "BillingPeriodStart" AS period,
           sum("EffectiveCost") AS cost
    FROM f WHERE "CommitmentDiscountStatus" = 'Unused' GROUP BY ALL
),
line AS (
    SELECT f.*, 0 AS part,
        CASE
            WHEN "ChargeCategory" = 'Usage' AND "CommitmentDiscountStatus" = 'Used'
                THEN CASE "x_PurchaseOption" WHEN 'Reserved' THEN 'DiscountedUsage'
                                             ELSE 'SavingsPlanCoveredUsage' END
            WHEN "ChargeCategory" = 'Usage' THEN 'Usage'
            WHEN "ChargeCategory" = 'Purchase'
                THEN CASE "x_PurchaseOption" WHEN 'Reserved' THEN 'RIFee'
                                             ELSE 'SavingsPlanRecurringFee' END
            WHEN "ChargeCategory" = 'Tax' THEN 'Tax'
            WHEN "ChargeCategory" = 'Adjustment' THEN 'Refund'
            ELSE 'Credit' END AS line_type
    FROM f WHERE "CommitmentDiscountStatus" IS DISTINCT FROM 'Unused'
    UNION ALL
    SELECT f.*, 1, 'SavingsPlanNegation'
    FROM f WHERE "ChargeCategory" = 'Usage' AND "CommitmentDiscountStatus" = 'Used'
               AND "x_PurchaseOption" = 'SavingsPlan'
)
SELECT
    CAST("InvoiceId" AS VARCHAR) AS bill_invoice_id,
    CAST("BillingAccountId" AS VARCHAR) AS bill_payer_account_id,
    CAST("BillingAccountName" AS VARCHAR) AS bill_payer_account_name,
    CAST(timezone('UTC', "BillingPeriodStart") AS TIMESTAMP) AS bill_billing_period_start_date,
    CAST(timezone('UTC', "BillingPeriodEnd") AS TIMESTAMP) AS bill_billing_period_end_date,
    CAST("SubAccountId" AS VARCHAR) AS line_item_usage_account_id,
    CAST("SubAccountName" AS VARCHAR) AS line_item_usage_account_name,
    line_type AS line_item_line_item_type,
    CAST(timezone('UTC', "ChargePeriodStart") AS TIMESTAMP) AS line_item_usage_start_date,
    CAST(timezone('UTC', "ChargePeriodEnd") AS TIMESTAMP) AS line_item_usage_end_date,
    product_code AS line_item_product_code,
    CASE WHEN line_type IN ('Usage', 'DiscountedUsage', 'SavingsPlanCoveredUsage',
                            'SavingsPlanNegation')
         THEN CASE WHEN "x_PurchaseOption" = 'Spot' THEN 'SpotUsage' ELSE 'BoxUsage' END
              || coalesce(':' || CAST("x_InstanceType" AS VARCHAR), ':' || CAST("SkuMeter" AS VARCHAR), '')
    END AS line_item_usage_type,
    CAST("ResourceId" AS VARCHAR) AS line_item_resource_id,
    CAST(CASE WHEN line_type IN ('Tax', 'Credit', 'Refund') THEN NULL
              ELSE "PricingQuantity" END AS DOUBLE) AS line_item_usage_amount,
    CAST(CASE line_type
            WHEN 'DiscountedUsage' THEN 0
            WHEN 'SavingsPlanCoveredUsage' THEN "ContractedCost"
            WHEN 'SavingsPlanNegation' THEN -"ContractedCost"
            ELSE "BilledCost" END AS DOUBLE) AS line_item_unblended_cost,
    CAST("BillingCurrency" AS VARCHAR) AS line_item_currency_code,
    CAST("ChargeDescription" AS VARCHAR) AS line_item_line_item_description,
    CAST("AvailabilityZone" AS VARCHAR) AS line_item_availability_zone,
    CASE WHEN line_type = 'Usage' THEN
         CASE WHEN "x_PurchaseOption" = 'Spot' THEN 'Spot' ELSE 'OnDemand' END
         WHEN line_type IN ('DiscountedUsage', 'SavingsPlanCoveredUsage') THEN 'OnDemand'
    END AS pricing_term,
    CASE CAST("PricingUnit" AS VARCHAR) WHEN 'Hours' THEN 'Hrs' WHEN 'GB-Months' THEN 'GB-Mo'
         ELSE CAST("PricingUnit" AS VARCHAR) END AS pricing_unit,
    CAST(CASE WHEN line_type IN ('Usage', 'DiscountedUsage', 'SavingsPlanCoveredUsage')
              THEN "ListCost" END AS DOUBLE) AS pricing_public_on_demand_cost,
    CAST("x_InstanceType" AS VARCHAR) AS product_instance_type,
    CAST("RegionId" AS VARCHAR) AS product_region_code,
    CAST("SkuId" AS VARCHAR) AS product_sku,
    CASE WHEN line_type IN ('DiscountedUsage', 'RIFee')
         THEN CAST("CommitmentDiscountId" AS VARCHAR) END AS reservation_reservation_a_r_n,
    CAST(CASE WHEN line_type = 'DiscountedUsage' THEN "EffectiveCost" END AS DOUBLE)
        AS reservation_effective_cost,
    CAST(CASE WHEN line_type = 'RIFee' THEN coalesce(u.cost, 0) END AS DOUBLE)
        AS reservation_unused_recurring_fee,
    CAST(CASE WHEN line_type = 'RIFee' THEN 0 END AS DOUBLE)
        AS reservation_unused_amortized_upfront_fee_for_billing_period,
    CASE WHEN line_type LIKE 'SavingsPlan%'
         THEN CAST("CommitmentDiscountId" AS VARCHAR) END AS savings_plan_savings_plan_a_r_n,
    CAST(CASE WHEN line_type = 'SavingsPlanCoveredUsage' THEN "EffectiveCost" END AS DOUBLE)
        AS savings_plan_savings_plan_effective_cost,
    CAST(CASE WHEN line_type = 'SavingsPlanRecurringFee' THEN "BilledCost" END AS DOUBLE)
        AS savings_plan_total_commitment_to_date,
    CAST(CASE WHEN line_type = 'SavingsPlanRecurringFee'
              THEN "BilledCost" - coalesce(u.cost, 0) END AS DOUBLE)
        AS savings_plan_used_commitment,
    CASE WHEN tag_map IS NOT NULL OR ("ResourceType" = 'Instance' AND "ResourceName" IS NOT NULL)
         THEN map_from_entries(list_transform(
                  map_entries(coalesce(tag_map, MAP {{}}::MAP(VARCHAR, VARCHAR))),
                  lambda e: {{'key': 'user_' || e.key, 'value': e.value}})
              || CASE WHEN "ResourceType" = 'Instance' AND "ResourceName" IS NOT NULL
                      THEN [{{'key': 'user_Name', 'value': CAST("ResourceName" AS VARCHAR)}}]
                      ELSE [] END)
    END AS resource_tags
FROM line LEFT JOIN unused AS u
    ON u.id = line."CommitmentDiscountId" AND u.period = line."BillingPeriodStart"
   AND line.line_type IN ('RIFee', 'SavingsPlanRecurringFee')
ORDER BY idx, part
"""


def aws_cur(focus: pa.Table) -> pa.Table:
    """AWS FOCUS rows as CUR 2.0 line items (Parquet columns, snake_case, costs as doubles)."""
    conn = _connect()
    try:
        conn.register("focus", focus)
        return conn.sql(_AWS_SQL).to_arrow_table()
    finally:
        conn.close()


_GCP_SQL = f"""
WITH service(name, id) AS (VALUES {_values(GCP_SERVICE_IDS)}),
f AS (
    SELECT row_number() OVER () AS idx, f.*, s.id AS service_id,
           CASE WHEN f."Tags" IS NULL THEN NULL ELSE {_TAGS} END AS tag_map
    FROM focus AS f LEFT JOIN service AS s ON s.name = f."ServiceName"
    WHERE f."CommitmentDiscountStatus" IS DISTINCT FROM 'Unused'
),
record AS (
    SELECT *,
        CASE WHEN "ChargeCategory" = 'Credit' THEN 0
             WHEN "CommitmentDiscountStatus" = 'Used' THEN "ContractedCost"
             ELSE "BilledCost" END AS cost,
        CASE WHEN "ChargeCategory" = 'Credit'
                 THEN [{{'name': CAST("ChargeDescription" AS VARCHAR),
                         'amount': CAST("BilledCost" AS DOUBLE),
                         'full_name': CAST("ChargeDescription" AS VARCHAR),
                         'id': 'promotion-' || CAST("SubAccountId" AS VARCHAR),
                         'type': 'PROMOTION'}}]
             WHEN "CommitmentDiscountStatus" = 'Used'
                 THEN [{{'name': 'Committed use discount: ' || CAST("CommitmentDiscountName" AS VARCHAR),
                         'amount': CAST(-"ContractedCost" AS DOUBLE),
                         'full_name': 'Committed use discount: ' || CAST("CommitmentDiscountName" AS VARCHAR),
                         'id': CAST("CommitmentDiscountId" AS VARCHAR),
                         'type': 'COMMITTED_USAGE_DISCOUNT'}}]
             ELSE [] END AS credits
    FROM f
)
SELECT
    CAST("BillingAccountId" AS VARCHAR) AS billing_account_id,
    {{'id': service_id, 'description': CAST("ServiceName" AS VARCHAR)}} AS service,
    {{'id': CAST("SkuId" AS VARCHAR),
      'description': CASE WHEN "ChargeCategory" = 'Purchase'
                          THEN 'Commitment v1: ' || CAST("CommitmentDiscountName" AS VARCHAR)
                          ELSE CAST("ChargeDescription" AS VARCHAR) END}} AS sku,
    "ChargePeriodStart" AS usage_start_time,
    "ChargePeriodEnd" AS usage_end_time,
    {{'id': CAST("SubAccountId" AS VARCHAR), 'number': CAST("x_ProjectNumber" AS VARCHAR),
      'name': CAST("SubAccountName" AS VARCHAR),
      'labels': CAST([] AS STRUCT(key VARCHAR, value VARCHAR)[])}} AS project,
    coalesce(list_transform(map_entries(tag_map),
                            lambda e: {{'key': e.key, 'value': e.value}}),
             CAST([] AS STRUCT(key VARCHAR, value VARCHAR)[])) AS labels,
    CASE WHEN "x_InstanceType" IS NOT NULL AND "ChargeCategory" = 'Usage'
         THEN [{{'key': 'compute.googleapis.com/machine_spec',
                 'value': CAST("x_InstanceType" AS VARCHAR)}}]
         ELSE CAST([] AS STRUCT(key VARCHAR, value VARCHAR)[]) END AS system_labels,
    {{'location': CAST("RegionId" AS VARCHAR), 'region': CAST("RegionId" AS VARCHAR),
      'zone': CAST("AvailabilityZone" AS VARCHAR)}} AS location,
    CAST(cost AS DOUBLE) AS cost,
    CAST("BillingCurrency" AS VARCHAR) AS currency,
    1.0 AS currency_conversion_rate,
    {{'amount': CAST(CASE WHEN "ChargeCategory" = 'Credit' THEN 0
                          ELSE coalesce("ConsumedQuantity", "PricingQuantity") END AS DOUBLE),
      'unit': CAST(coalesce("ConsumedUnit", "PricingUnit") AS VARCHAR),
      'amount_in_pricing_units': CAST(CASE WHEN "ChargeCategory" = 'Credit' THEN 0
                                           ELSE "PricingQuantity" END AS DOUBLE),
      'pricing_unit': CAST("PricingUnit" AS VARCHAR)}} AS usage,
    credits,
    {{'month': strftime("BillingPeriodStart", '%Y%m')}} AS invoice,
    'regular' AS cost_type,
    {{'name': CAST("ResourceName" AS VARCHAR),
      'global_name': CAST("ResourceId" AS VARCHAR)}} AS resource,
    CAST(CASE WHEN "ChargeCategory" = 'Credit' THEN 0 ELSE "ListCost" END AS DOUBLE)
        AS cost_at_list
FROM record ORDER BY idx
"""


def gcp_export(focus: pa.Table) -> pa.Table:
    """Google Cloud FOCUS rows as detailed billing export records (the BigQuery schema)."""
    conn = _connect()
    try:
        conn.register("focus", focus)
        return conn.sql(_GCP_SQL).to_arrow_table()
    finally:
        conn.close()
