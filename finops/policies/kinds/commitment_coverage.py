"""commitment-coverage: a steady on-demand baseline a savings plan or committed-use
discount would cover, with its break-even; commitments about to expire.

Per provider, region and instance family, the lookback's on-demand compute spend per day
(amortised, not covered by a commitment) is averaged to an hourly rate; the baseline is a
low percentile of those days (`baseline_percentile`, default the 10th), so the commitment
stays used on quiet days. Savings: baseline x hours in a month x the discount. The discount
is the one observed in the `prices` table for the family (committed vs on-demand price of
the same types) where it holds both, else `discount_rates` for the provider. Break-even:
the months of the term the usage must last for the commitment to pay for itself,
term x (1 - discount). Commitments in `expiries` ending within `expiry_warning_days` are
flagged so they are renewed, or let go, on purpose.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated

from pydantic import Field

from finops.policies.facts import HOURS_PER_MONTH, Window, as_decimal
from finops.policies.model import Decision, Finding, Policy, Subject
from finops.policies.registry import Context, KindParams, register

_COMMITTED_OPTIONS = ["Reserved", "SavingsPlan", "CommittedUse"]


class CommitmentCoverageParams(KindParams):
    lookback_days: Annotated[int, Field(ge=14, le=365)] = 30
    baseline_percentile: Annotated[float, Field(ge=0, le=0.5)] = 0.1
    term_months: Annotated[int, Field(ge=1, le=60)] = 12
    discount_rates: dict[str, Annotated[float, Field(gt=0, lt=1)]] = {
        "AWS": 0.28,
        "Google Cloud": 0.37,
    }
    """One-year no-upfront discounts assumed per provider when prices show none."""
    min_monthly_savings: Annotated[Decimal, Field(ge=0)] = Decimal(200)
    expiries: dict[str, date] = {}
    """Commitment id (or name) -> the day it ends."""
    expiry_warning_days: Annotated[int, Field(ge=1)] = 90


def break_even_months(term_months: int, discount: float) -> float:
    """Months of the term the usage must last for the commitment to pay for itself."""
    return round(term_months * (1 - discount), 1)


@register("commitment-coverage", CommitmentCoverageParams)
def evaluate(ctx: Context, policy: Policy, params: CommitmentCoverageParams) -> list[Decision]:
    """Steady on-demand spend a commitment would cover; commitments about to expire."""
    window = Window.ending(ctx.now, params.lookback_days)
    rows = ctx.conn.sql(
        """
        WITH usage AS (
            SELECT "ProviderName" AS provider, "RegionId" AS region,
                   CASE WHEN "x_InstanceType" LIKE '%.%'
                        THEN regexp_extract("x_InstanceType", '^(ml\\.)?([a-z0-9-]+)\\.', 2)
                        ELSE array_to_string(string_split("x_InstanceType", '-')[1:2], '-') END
                       AS family,
                   "x_InstanceType" AS instance_type,
                   CAST("ChargePeriodStart" AS DATE) AS day, "EffectiveCost" AS cost,
                   coalesce("SubAccountId", "BillingAccountId") AS account
            FROM cost_resolved
            WHERE "ChargeCategory" = 'Usage' AND "PricingCategory" = 'Standard'
              AND "CommitmentDiscountId" IS NULL AND "PricingUnit" = 'Hours'
              AND "ServiceCategory" IN ('Compute', 'AI and Machine Learning')
              AND "x_InstanceType" IS NOT NULL
              AND coalesce("x_PurchaseOption", 'OnDemand') = 'OnDemand'
              AND "ChargePeriodStart" >= ? AND "ChargePeriodStart" < ?
        ),
        daily AS (
            SELECT provider, region, family, day, sum(cost) / 24 AS hourly
            FROM usage GROUP BY ALL
        ),
        days AS (SELECT provider, region, family, count(*) AS days_seen,
                        quantile_disc(hourly, ?) AS baseline, avg(hourly) AS mean_hourly
                 FROM daily GROUP BY ALL),
        observed AS (
            SELECT p.provider, p.region, u.family,
                   1 - sum(c.hourly_price) / sum(p.hourly_price) AS discount
            FROM prices p
            JOIN prices c ON c.provider = p.provider AND c.region = p.region
                         AND c.instance_type = p.instance_type AND c.as_of = p.as_of
                         AND list_contains(?, c.purchase_option)
            JOIN (SELECT DISTINCT provider, region, family, instance_type FROM usage) u
              ON u.provider = p.provider AND u.region = p.region AND u.instance_type = p.instance_type
            WHERE p.purchase_option = 'OnDemand'
            GROUP BY ALL
        )
        SELECT d.provider, d.region, d.family, d.days_seen, d.baseline, d.mean_hourly,
               o.discount,
               (SELECT list(DISTINCT account ORDER BY account) FROM usage u
                 WHERE u.provider = d.provider AND u.region = d.region AND u.family = d.family)
        FROM days d LEFT JOIN observed o USING (provider, region, family)
        ORDER BY d.baseline DESC, d.provider, d.region, d.family
        """,
        params=[window.start, window.end, params.baseline_percentile, _COMMITTED_OPTIONS],
    ).fetchall()
    decisions: list[Decision] = []
    for provider, region, family, days_seen, baseline, mean_hourly, observed, accounts in rows:
        label = f"{provider} {family} in {region}"
        if days_seen < window.days:
            decisions.append(
                Decision.keep(
                    f"{label}: on-demand on {days_seen} of {window.days} days, not steady"
                )
            )
            continue
        discount = (
            float(observed)
            if observed and 0 < observed < 1
            else params.discount_rates.get(provider)
        )
        if discount is None:
            decisions.append(Decision.keep(f"{label}: no discount rate known for {provider}"))
            continue
        baseline = as_decimal(baseline)
        savings = baseline * HOURS_PER_MONTH * Decimal(str(discount))
        if savings < params.min_monthly_savings:
            decisions.append(Decision.keep(f"{label}: {savings:,.2f} a month, under the minimum"))
            continue
        basis = "observed in prices" if observed else f"assumed for {provider}"
        decisions.append(
            Decision.recommend(
                Finding(
                    resource_id=f"{provider}/{region}/{family}",
                    resource_name=label,
                    reason=(
                        f"{label}: on-demand every day of {window.days}, never under "
                        f"{baseline:,.2f}/h on {1 - params.baseline_percentile:.0%} of days; a "
                        f"{params.term_months}-month commitment at that rate saves "
                        f"{discount:.0%} ({basis}), breaking even after "
                        f"{break_even_months(params.term_months, discount)} months of use"
                    ),
                    monthly_savings=savings,
                    confidence=0.8 if observed else 0.6,
                    risk="medium",
                    evidence={
                        "window": window.as_json(),
                        "baseline_hourly": str(baseline),
                        "mean_hourly": str(round(as_decimal(mean_hourly), 4)),
                        "discount": round(discount, 4),
                        "discount_basis": basis,
                        "term_months": params.term_months,
                        "break_even_months": break_even_months(params.term_months, discount),
                        "commitment_monthly": str(
                            round(baseline * HOURS_PER_MONTH * Decimal(str(1 - discount)), 2)
                        ),
                    },
                    action=policy.action,
                    subject=Subject(
                        provider=provider,
                        region=region,
                        account=accounts[0] if len(accounts) == 1 else None,
                    ),
                )
            )
        )
    decisions.extend(_expiring(ctx, policy, params))
    return decisions


def _expiring(ctx: Context, policy: Policy, params: CommitmentCoverageParams) -> list[Decision]:
    today = ctx.now.date()
    decisions: list[Decision] = []
    for commitment, ends in sorted(params.expiries.items()):
        days = (ends - today).days
        if not 0 <= days <= params.expiry_warning_days:
            continue
        decisions.append(
            Decision.recommend(
                Finding(
                    resource_id=commitment,
                    resource_name=commitment,
                    reason=(
                        f"commitment {commitment} ends on {ends} ({days} days): renew it, "
                        "resize it or let it go on purpose"
                    ),
                    monthly_savings=Decimal(0),
                    confidence=1.0,
                    risk="medium",
                    evidence={"ends": ends.isoformat(), "days_left": days},
                    action=policy.action,
                    subject=Subject(),
                )
            )
        )
    return decisions
