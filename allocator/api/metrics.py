"""Prometheus metrics of one app, in a registry of its own (several apps in one process, as in
tests, never share a series).

Names follow kube-apiserver's ClusterIP allocator metrics, so dashboards carry over:

    allocator_allocated_ips{range}                          gauge, from the database at scrape time
    allocator_available_ips{range}                          gauge, from the database at scrape time
    allocator_cooling_ips{range}                            gauge, released and cooling down
    allocator_range_size{range}                             gauge, usable addresses (a resize changes it)
    allocator_range_allocatable{range}                      gauge, 0 while the range is drained
    allocator_event_revision                                gauge, the log head at scrape time
    allocator_database_up                                   gauge, 0 when the scrape could not read it
    allocator_allocation_total{range,scope}                 counter, new allocations (static|dynamic)
    allocator_allocation_errors_total{range,scope,reason}   counter, refusals by problem type
    allocator_allocation_duration_seconds{scope}            histogram, every allocation request
    allocator_release_total{range}                          counter, released allocations
    allocator_batch_requests                                histogram, requests per batch
    allocator_batch_errors_total{reason}                    counter, batches refused as a whole
    allocator_watchers                                      gauge, open watch streams
    allocator_feed_listener_up                              gauge, 1 while LISTEN is live
    allocator_http_requests_total{method,route,status}      counter, by route template
    allocator_http_request_duration_seconds{method,route}   histogram, by route template

Counters count what this process did; the gauges read the database, so they agree across replicas.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any

from fastapi import Depends, Request
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from allocator.service.totals import Totals

BATCH_BUCKETS = (1, 2, 5, 10, 50, 100, 250, 500, 1000)
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class StoreCollector(Collector):
    """The gauges read from the database: set ``totals`` right before collecting."""

    def __init__(self) -> None:
        self.totals: Totals | None = None

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily(
            "allocator_database_up", "Whether this scrape could read the database (1) or not (0)."
        )
        up.add_metric([], 0 if self.totals is None else 1)
        yield up
        if self.totals is None:
            return
        allocated = GaugeMetricFamily(
            "allocator_allocated_ips", "Allocated addresses of a range.", labels=["range"]
        )
        available = GaugeMetricFamily(
            "allocator_available_ips", "Free addresses of a range.", labels=["range"]
        )
        cooling = GaugeMetricFamily(
            "allocator_cooling_ips",
            "Released addresses of a range still cooling down (neither allocated nor free).",
            labels=["range"],
        )
        size = GaugeMetricFamily(
            "allocator_range_size",
            "Usable addresses of a range (it changes with a resize).",
            labels=["range"],
        )
        allocatable = GaugeMetricFamily(
            "allocator_range_allocatable",
            "Whether a range serves new allocations (1) or is drained (0).",
            labels=["range"],
        )
        for one in self.totals.ranges:
            allocated.add_metric([one.name], one.allocated)
            available.add_metric([one.name], one.free)
            cooling.add_metric([one.name], one.cooling)
            size.add_metric([one.name], one.geometry.size)
            allocatable.add_metric([one.name], int(one.allocatable))
        revision = GaugeMetricFamily(
            "allocator_event_revision", "Revision of the newest change in the event log."
        )
        revision.add_metric([], self.totals.revision)
        yield from (allocated, available, cooling, size, allocatable, revision)


class Metrics:
    """The metrics of one app (``app.state.metrics``).

    ``watchers`` is for the watch feed: ``inc()`` when a stream opens and ``dec()`` when it
    ends, or ``set_function(callable)`` to report a count it keeps itself.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.allocations = Counter(
            "allocator_allocation",
            "New allocations, by range and scope (static: user-requested IP, dynamic).",
            ["range", "scope"],
            registry=registry,
        )
        self.allocation_errors = Counter(
            "allocator_allocation_errors",
            "Refused allocations, by range (when named), scope and problem type.",
            ["range", "scope", "reason"],
            registry=registry,
        )
        self.allocation_duration = Histogram(
            "allocator_allocation_duration_seconds",
            "Time to serve an allocation request, refused or not.",
            ["scope"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.batch_size = Histogram(
            "allocator_batch_requests",
            "Requests per batch (POST /v1/allocations:batch).",
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.batch_errors = Counter(
            "allocator_batch_errors",
            "Batches refused as a whole (an atomic batch-failed, invalid-request...), by problem type.",
            ["reason"],
            registry=registry,
        )
        self.releases = Counter(
            "allocator_release", "Released allocations, by range.", ["range"], registry=registry
        )
        self.watchers = Gauge("allocator_watchers", "Open watch streams.", registry=registry)
        self.listener_up = Gauge(
            "allocator_feed_listener_up",
            "Whether the feed's LISTEN connection to the primary is live (1); at 0 the feed is"
            " delivered by polling.",
            registry=registry,
        )
        self.http_requests = Counter(
            "allocator_http_requests",
            "HTTP requests, by method, route template and status.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.http_duration = Histogram(
            "allocator_http_request_duration_seconds",
            "HTTP request time until the response ends, by method and route template.",
            ["method", "route"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.store = StoreCollector()
        registry.register(self.store)
        self._children: dict[tuple[Counter | Histogram, tuple[str, ...]], Any] = {}

    def child(self, metric: Counter | Histogram, *labels: str) -> Any:
        """``metric.labels(*labels)``, looked up once: prometheus-client checks the values and
        takes a lock on every lookup, which costs more than the count itself."""
        key = (metric, labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def render(self, totals: Totals | None) -> bytes:
        """Return the text exposition with the database gauges of ``totals`` (None: unreadable)."""
        # No await between setting and collecting: concurrent scrapes cannot mix snapshots.
        self.store.totals = totals
        return generate_latest(self.registry)


def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


MetricsDep = Annotated[Metrics, Depends(get_metrics)]
