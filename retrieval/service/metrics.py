"""Prometheus metrics of one app: request counts and latency by route template and status, index sizes."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ServiceMetrics:
    """Its own registry, so several apps (tests) never collide in the global one."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("unibind_requests", "HTTP requests answered", ["method", "route", "status"],
                                registry=self.registry)
        self.latency = Histogram("unibind_request_seconds", "HTTP request latency", ["method", "route", "status"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.index_vectors = Gauge("unibind_index_vectors", "vectors per index", ["space", "target"],
                                   registry=self.registry)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route, str(status)).observe(seconds)

    def set_index_sizes(self, sizes: Iterable[tuple[str, str, int]]) -> None:
        self.index_vectors.clear()
        for space, target, n in sizes:
            self.index_vectors.labels(space, target).set(n)

    def render(self) -> bytes:
        return generate_latest(self.registry)
