"""Which executor acts on which resource type, built from settings (or given, in tests)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import boto3

from finops.actions.aws import AwsClients, aws_executors
from finops.actions.retry import Retry
from finops.actions.targets import Executor, Target
from finops.config import ActionSettings
from finops.errors import ActionError


class Executors:
    """Executors by resource type; Google Cloud's are built on first use, since creating
    their clients needs credentials that an AWS-only deployment does not have."""

    def __init__(
        self,
        by_type: Mapping[str, Executor],
        lazy: Callable[[], Mapping[str, Executor]] | None = None,
    ) -> None:
        self._by_type = dict(by_type)
        self._lazy = lazy

    @classmethod
    def from_settings(
        cls, settings: ActionSettings, *, aws_session: boto3.session.Session | None = None
    ) -> Executors:
        retry = Retry.from_settings(settings)

        def google() -> Mapping[str, Executor]:
            from finops.actions.gcp import GcpClients, gcp_executors

            return gcp_executors(GcpClients.default(), retry, settings.operation_timeout_s)

        return cls(aws_executors(AwsClients(retry, aws_session)), google)

    def for_target(self, target: Target) -> Executor:
        if target.resource_type not in self._by_type and self._lazy is not None:
            self._by_type.update(self._lazy())
            self._lazy = None
        try:
            return self._by_type[target.resource_type]
        except KeyError:
            raise ActionError(f"{target.label}: no executor for {target.resource_type}") from None
