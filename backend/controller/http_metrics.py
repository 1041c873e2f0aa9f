"""Prometheus metrics of the HTTP layer: requests, their durations, and refusals."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

REQUEST_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

# Why a request was refused before it ran (the `reason` label of t2i_rejections_total).
REJECTION_REASONS = ("queue_full", "timeout", "unauthorized", "rate_limited", "not_ready")


class HttpMetrics:
    """Counted by the request log, for every request, in either queue mode."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "t2i_http_requests",
            "HTTP requests answered, by route template, method and status.",
            ["route", "method", "status"],
            registry=registry,
        )
        self.request_seconds = Histogram(
            "t2i_http_request_duration_seconds",
            "Time from receiving a request to returning its response, by route template.",
            ["route"],
            buckets=REQUEST_BUCKETS,
            registry=registry,
        )
        self.rejections = Counter(
            "t2i_rejections",
            "Requests refused without running: queue_full, timeout, unauthorized, "
            "rate_limited, not_ready.",
            ["reason"],
            registry=registry,
        )
        for reason in REJECTION_REASONS:  # present (at 0) from the first scrape
            self.rejections.labels(reason)
