"""An inventory derived from billing, for estates whose cloud APIs are out of reach.

Every resource id billed in the window becomes a resource: its provider, account, region,
type and instance type from the FOCUS columns, its purchase option from `x_PurchaseOption`
(else PricingCategory), its cluster from the first cluster tag present (the AWS-generated
`aws:eks:cluster-name`, `aws:autoscaling:groupName`, GKE's `goog-k8s-cluster-name`, or a
configured tag), its node group from `eks:nodegroup-name` / `aws:autoscaling:groupName` /
`goog-k8s-node-pool-name`, and its node name from ResourceName. The tags are those of its
latest charge. State is `billed`: billing cannot tell running from stopped.
"""

from __future__ import annotations

from datetime import datetime

import duckdb

from finops.warehouse import ResourceSnapshot

NODE_GROUP_TAGS = ("eks:nodegroup-name", "aws:autoscaling:groupName", "goog-k8s-node-pool-name")


def inventory_from_billing(
    conn: duckdb.DuckDBPyConnection,
    *,
    cluster_tag_keys: tuple[str, ...],
    since: datetime,
    until: datetime,
) -> ResourceSnapshot:
    """Resources billed in [since, until), as a snapshot seen at `until`."""
    cluster_keys = (*cluster_tag_keys, "aws:autoscaling:groupName")
    cluster = f"coalesce({', '.join('ts.tags[?]' for _ in cluster_keys)})"
    node_group = f"coalesce({', '.join('ts.tags[?]' for _ in NODE_GROUP_TAGS)})"
    sql = f"""
        WITH latest AS (
            SELECT "ResourceId" AS resource_id,
                   any_value("ProviderName") AS provider,
                   any_value(coalesce("SubAccountId", "BillingAccountId")) AS account_id,
                   any_value("RegionId") AS region,
                   any_value("ResourceType") AS resource_type,
                   any_value("x_InstanceType") AS instance_type,
                   any_value(coalesce("x_PurchaseOption", "PricingCategory")) AS purchase_option,
                   any_value("ResourceName") AS node_name,
                   min("ChargePeriodStart") AS launched_at,
                   arg_max("x_TagSetId", "ChargePeriodStart") AS tag_set_id
            FROM cost_resolved
            WHERE "ResourceId" IS NOT NULL AND "ChargeCategory" = 'Usage'
              AND "ChargePeriodStart" >= ? AND "ChargePeriodStart" < ?
            GROUP BY 1
        )
        SELECT l.resource_id, l.provider, l.account_id, l.region, l.resource_type,
               l.instance_type, l.purchase_option, {cluster} AS cluster,
               {node_group} AS node_group, l.node_name, 'billed' AS state, l.launched_at,
               ts.tags
        FROM latest l LEFT JOIN tag_sets ts ON ts.tag_set_id = l.tag_set_id
        ORDER BY l.resource_id
    """
    table = conn.sql(sql, params=[since, until, *cluster_keys, *NODE_GROUP_TAGS]).to_arrow_table()
    return ResourceSnapshot(uri="billing", table=table, seen_at=until)
