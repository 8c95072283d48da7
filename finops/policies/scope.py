"""Does a policy's scope cover a subject? A pure function, with the reason when it doesn't."""

from __future__ import annotations

from finops.policies.model import Filter, Scope, Subject


def _hits(wanted: tuple[str, ...], value: str | None) -> bool:
    return value is not None and value.lower() in {w.lower() for w in wanted}


def _mismatch(flt: Filter, subject: Subject) -> str | None:
    """The first attribute of `subject` that `flt` does not allow (None: it matches)."""
    checks = (
        ("provider", flt.providers, subject.provider),
        ("account", flt.accounts, subject.account),
        ("region", flt.regions, subject.region),
        ("cluster", flt.clusters, subject.cluster),
        ("environment", flt.environments, subject.environment),
        ("team", flt.teams, subject.team),
    )
    for name, wanted, value in checks:
        if wanted and not _hits(wanted, value):
            return f"{name} {value or '(none)'}"
    if flt.resources and not any(_hits(flt.resources, r) for r in subject.resource_ids):
        return "resource"
    for key, values in flt.tags.items():
        value = subject.tags.get(key)
        if value is None or (values and not _hits(values, value)):
            return f"tag {key}={value or '(none)'}"
    return None


def _hit(flt: Filter, subject: Subject) -> str | None:
    """The first attribute of `subject` that an exclude filter names (None: none does)."""
    checks = (
        ("provider", flt.providers, subject.provider),
        ("account", flt.accounts, subject.account),
        ("region", flt.regions, subject.region),
        ("cluster", flt.clusters, subject.cluster),
        ("environment", flt.environments, subject.environment),
        ("team", flt.teams, subject.team),
    )
    for name, wanted, value in checks:
        if wanted and _hits(wanted, value):
            return f"{name} {value}"
    for resource in subject.resource_ids:
        if flt.resources and _hits(flt.resources, resource):
            return f"resource {resource}"
    for key, values in flt.tags.items():
        value = subject.tags.get(key)
        if value is not None and (not values or _hits(values, value)):
            return f"tag {key}={value}"
    return None


def out_of_scope(scope: Scope, subject: Subject) -> str | None:
    """Why the scope leaves `subject` out, or None when the policy covers it."""
    missing = _mismatch(scope.include, subject)
    if missing:
        return f"outside the policy's scope ({missing})"
    excluded = _hit(scope.exclude, subject)
    if excluded:
        return f"excluded by the policy ({excluded})"
    return None
