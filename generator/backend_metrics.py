"""Where a backend platform publishes its health metrics: the one description monitoring reads.

Each backend stack module defines `metrics(config) -> BackendMetrics` for its platform; the monitoring
stack builds the platform-neutral part of its dashboard (and the ECS Express alarms) from it, so no alarm
points at a metric the chosen platform does not publish. Dimension values are literal strings or
`${Name}` placeholders naming a monitoring-stack parameter (wired from the backend stack's output of that
name) or a pseudo parameter such as `${AWS::Region}`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    namespace: str
    name: str
    dimensions: tuple[tuple[str, str], ...]
    statistic: str = "Sum"

    def dashboard(self, **options) -> list:
        """A CloudWatch dashboard metric row: [namespace, name, dim, value, ..., {options}]."""
        row: list = [self.namespace, self.name, *[part for pair in self.dimensions for part in pair]]
        return [*row, options] if options else row


@dataclass(frozen=True)
class BackendMetrics:
    """The metrics of one backend platform.

    `parameters` are the backend stack outputs the monitoring stack takes as parameters (name ->
    description). `errors_5xx` are summed. `latency` is alarmed on p99; `latency_per_ms` converts the
    configured threshold in milliseconds into the metric's unit (1 for ms, 0.001 for seconds).
    `instances` counts running instances/tasks; `desired` is the count the scaler asks for (None where the
    platform publishes none). `cpu`/`memory` are percentages of the instance/task size.
    """

    platform: str
    title: str
    parameters: dict[str, str]
    requests: Metric
    errors_5xx: tuple[Metric, ...]
    latency: Metric
    latency_per_ms: float
    instances: Metric
    desired: Metric | None
    cpu: Metric
    memory: Metric
