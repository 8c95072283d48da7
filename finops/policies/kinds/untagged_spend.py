"""untagged-spend: usage no team tag claims, per account and service, with a likely owner.

Uses charge-back's own attribution (the allocation tag, its aliases, value normalisation
and team aliases), so what this flags is exactly what charge-back puts in the unallocated
row. Only usage charges count: taxes, credits and commitment fees carry no resource to tag.
The likely owner is the team with most of the tagged usage in the same account, when it
holds at least `min_owner_share` of it. Nothing is saved by tagging: the finding's savings
are zero and the untagged monthly cost is in its evidence.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import Field

from finops.analytics.chargeback import chargeback, parse_dimensions
from finops.policies.facts import Window
from finops.policies.model import Decision, Finding, Policy, Subject
from finops.policies.registry import Context, KindParams, register


class UntaggedSpendParams(KindParams):
    lookback_days: Annotated[int, Field(ge=1, le=365)] = 30
    min_monthly_cost: Annotated[Decimal, Field(ge=0)] = Decimal(100)
    """Account/service groups whose untagged usage is under this a month are left out."""
    min_owner_share: Annotated[float, Field(gt=0, le=1)] = 0.5
    top_resources: Annotated[int, Field(ge=0, le=100)] = 10


@register("untagged-spend", UntaggedSpendParams)
def evaluate(ctx: Context, policy: Policy, params: UntaggedSpendParams) -> list[Decision]:
    """Usage without the allocation tag, by account and service, with a likely owner."""
    window = Window.ending(ctx.now, params.lookback_days)
    allocation = ctx.config.allocation
    dims = parse_dimensions(
        "team,account,account-name,provider,region,service,charge-category,resource",
        allocation,
        ctx.config.teams,
    )
    billed = chargeback(
        ctx.conn,
        window.period,
        dims,
        cost="effective",
        unallocated_label=allocation.unallocated_label,
    )
    ctx.conn.register("policy_billed", billed)
    try:
        groups = ctx.conn.sql(
            """
            WITH usage AS (
                SELECT * FROM policy_billed WHERE "charge-category" = 'Usage'
            ),
            owners AS (
                SELECT account, arg_max(team, cost) AS team, max(cost) / sum(cost) AS share
                FROM (SELECT account, team, sum(exact_cost) AS cost FROM usage
                      WHERE team <> ? GROUP BY ALL)
                GROUP BY account
            )
            SELECT u.account, any_value(u."account-name"), any_value(u.provider), u.service,
                   any_value(u.region), sum(u.exact_cost) AS cost, any_value(u.currency),
                   count(DISTINCT u.resource) FILTER (WHERE u.resource <> '(none)'),
                   list(u.resource ORDER BY u.exact_cost DESC, u.resource)
                       FILTER (WHERE u.resource <> '(none)'),
                   any_value(o.team), any_value(o.share)
            FROM usage u LEFT JOIN owners o USING (account)
            WHERE u.team = ?
            GROUP BY u.account, u.service
            ORDER BY cost DESC, u.account, u.service
            """,
            params=[allocation.unallocated_label, allocation.unallocated_label],
        ).fetchall()
    finally:
        ctx.conn.unregister("policy_billed")

    decisions: list[Decision] = []
    for (
        account,
        name,
        provider,
        service,
        region,
        cost,
        currency,
        count,
        top,
        owner,
        share,
    ) in groups:
        monthly = window.monthly(cost)
        label = f"{service} in {name or account}"
        if monthly < params.min_monthly_cost:
            decisions.append(
                Decision.keep(f"{label}: {monthly:,.2f} a month untagged, under the minimum")
            )
            continue
        likely = owner if owner and share >= params.min_owner_share else None
        guess = f"; likely {likely} ({share:.0%} of the account's tagged usage)" if likely else ""
        reason = (
            f"{label}: {monthly:,.2f} {currency} a month of usage on {count} resource(s) "
            f"carries no {allocation.tag_key} tag{guess}"
        )
        decisions.append(
            Decision.recommend(
                Finding(
                    resource_id=f"{account}/{service}",
                    resource_name=label,
                    reason=reason,
                    monthly_savings=Decimal(0),
                    confidence=1.0,
                    risk="low",
                    evidence={
                        "window": window.as_json(),
                        "untagged_cost": str(cost),
                        "untagged_monthly_cost": str(round(monthly, 2)),
                        "resources": count,
                        "top_resources": (top or [])[: params.top_resources],
                        "likely_owner": likely,
                        "owner_share": round(float(share), 3) if share is not None else None,
                        "tag_keys": list(allocation.tag_keys),
                    },
                    action=policy.action,
                    subject=Subject(provider=provider, account=account, region=region, team=likely),
                    owner=likely,
                    billed_resource_ids=tuple(top or ()),
                )
            )
        )
    return decisions
