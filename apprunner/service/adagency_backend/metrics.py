"""The service's own metric: latency of non-streaming requests, as CloudWatch Embedded Metric Format (EMF).

App Runner's `RequestLatency` includes Server-Sent-Event responses that stay open ~100 s by design, so an alarm
on it fires all the time. Each non-streaming request instead writes one EMF line to stdout; App Runner ships
stdout to the application log group, and CloudWatch Logs extracts the metric from any log event in EMF (the
`x-amzn-logs-format` header is optional):
https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html
https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Generation_PutLogEvents.html

NAMESPACE, LATENCY_METRIC and DIMENSION must equal generator/contract.py (a test checks).
"""

from __future__ import annotations

import json
import sys
import time

NAMESPACE = "AdkitBackend"
LATENCY_METRIC = "ApiLatency"          # milliseconds, non-streaming requests only
DIMENSION = "Environment"              # value: APP_ENVIRONMENT
STREAM_CONTENT_TYPE = "text/event-stream"


def latency_record(environment: str, duration_ms: float, request_id: str = "-",
                   timestamp_ms: int | None = None) -> dict:
    """One EMF document: `ApiLatency` (Milliseconds) with dimension Environment=<environment>, plus the fields
    every log line of the service carries (level, logger, msg, request_id)."""
    return {
        "level": "INFO", "logger": "adagency_backend.metrics", "msg": "metric", "request_id": request_id,
        "_aws": {
            "Timestamp": int(time.time() * 1000) if timestamp_ms is None else timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [[DIMENSION]],
                "Metrics": [{"Name": LATENCY_METRIC, "Unit": "Milliseconds"}],
            }],
        },
        DIMENSION: environment,
        LATENCY_METRIC: round(duration_ms, 1),
    }


def emit_latency(environment: str, duration_ms: float, request_id: str = "-", stream=None) -> None:
    """Write the EMF line (one JSON object, no other text on the line, as EMF requires)."""
    out = stream or sys.stdout
    out.write(json.dumps(latency_record(environment, duration_ms, request_id), separators=(",", ":")) + "\n")
    out.flush()
