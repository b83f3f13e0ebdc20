"""
Prometheus metrics for a server (C{--metrics ENDPOINT}), with the
C{prometheus-client} library (the C{metrics} extra), served over
C{twisted.web} from the reactor thread::

    metrics = PrometheusMetrics()
    metrics.watch(factory)
    serverFromString(reactor, "tcp:9100:interface=127.0.0.1").listen(Site(metrics.resource()))

Metrics (all prefixed C{jsonservice_}): C{requests_total{method,outcome}},
C{request_duration_seconds{method}} (histogram), C{connections} (open),
C{connections_opened_total}, C{in_flight}, C{received_bytes_total},
C{sent_bytes_total}, C{limit_breaches_total{limit}}; and for topics
(C{rpc.subscribe}, C{publish}): C{events_published_total},
C{events_delivered_total}, C{events_dropped_total} (not sent to a
backed-up subscriber), C{subscriptions}, C{topics} and C{pubsub_up}
(whether the backend can publish: Redis connected).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from twisted.web.resource import Resource

if TYPE_CHECKING:
    from twisted.web.server import Request

    from .factory import JSONFactoryBase
    from .protocol import JSONProtocol
    from .pubsub import PubSub

__all__ = [
    "MULTIPROCESS_VARIABLE",
    "MetricsPage",
    "PrometheusMetrics",
    "SupervisorMetrics",
    "WorkerGauges",
    "multiprocess_registry",
]

#: prometheus-client's multiprocess mode: with C{--workers}, the supervisor
#: sets it to a directory of its own; each worker records its metrics there
#: and the supervisor serves their sum.
MULTIPROCESS_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

#: Latency buckets, in seconds: from 50 µs (a plain value) to 30 s (the
#: default request timeout).
BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
           2.5, 5.0, 10.0, 30.0)  # fmt: skip


class PrometheusMetrics:
    """
    Collects the metrics of the factories it L{watch}es into its own
    C{CollectorRegistry} (so several can coexist, e.g. in tests).

    Request counts and latencies come through the
    L{RequestObserver<jsonservice.observers.RequestObserver>} interface;
    gauges and byte counts are read from the factories when scraped, so the
    hot path pays for nothing but the request observation.
    """

    def __init__(self, registry: Any = None, *, multiprocess: bool = False) -> None:
        """
        @param registry: a C{prometheus_client.CollectorRegistry} (default:
            a new one).
        @param multiprocess: this is a C{--workers} worker recording for its
            supervisor (prometheus-client's multiprocess mode).
        @raise ImportError: C{prometheus-client} is not installed (install
            the C{metrics} extra).
        """
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = registry if registry is not None else CollectorRegistry()
        self.factories: list[JSONFactoryBase] = []
        self._requests = Counter(
            "jsonservice_requests",
            "Requests and plain messages handled, by method and outcome",
            ["method", "outcome"],
            registry=self.registry,
        )
        self._latency = Histogram(
            "jsonservice_request_duration_seconds",
            "Time handlers ran, by method",
            ["method"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self._breaches = Counter(
            "jsonservice_limit_breaches",
            "Limits hit, by limit",
            ["limit"],
            registry=self.registry,
        )
        if not multiprocess:
            # One process: read the factories at scrape time.  A worker
            # instead writes them to its files (WorkerGauges).
            self.registry.register(_FactoryCollector(self))

    def watch(self, factory: JSONFactoryBase) -> None:
        """Count the requests, connections and bytes of C{factory}."""
        factory.add_observer(self)
        self.factories.append(factory)

    def request_done(self, proto: JSONProtocol, method: str, outcome: str, seconds: float) -> None:
        """Count one finished request (see C{RequestObserver})."""
        self._requests.labels(method, outcome).inc()
        self._latency.labels(method).observe(seconds)

    def limit_breached(self, proto: JSONProtocol | None, limit: str) -> None:
        """Count one limit breach (see C{RequestObserver})."""
        self._breaches.labels(limit).inc()

    def render(self) -> bytes:
        """The metrics in the Prometheus text format."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry)

    def resource(self) -> MetricsPage:
        """A C{twisted.web} resource serving L{render}."""
        return MetricsPage(self)


def _hubs(factories: list[JSONFactoryBase]) -> list[PubSub]:
    """The pub/sub hubs of the factories' services, each once."""
    hubs: dict[int, PubSub] = {}
    for factory in factories:
        if factory.service is not None:
            hubs[id(factory.service.pubsub)] = factory.service.pubsub
    return list(hubs.values())


def pubsub_values(factories: list[JSONFactoryBase]) -> dict[str, float]:
    """The topic metrics of C{factories}, by name (without the C{jsonservice_} prefix)."""
    hubs = _hubs(factories)
    return {
        "events_published": sum(hub.published for hub in hubs),
        "events_delivered": sum(hub.delivered for hub in hubs),
        "events_dropped": sum(hub.dropped for hub in hubs),
        "subscriptions": sum(hub.subscriptions for hub in hubs),
        "topics": sum(hub.topics for hub in hubs),
        "pubsub_up": float(all(getattr(hub.backend, "connected", True) for hub in hubs)),
    }


#: Help of the topic metrics; the first three are counters.
_PUBSUB_HELP = {
    "events_published": "Events published from this process",
    "events_delivered": "Events written to subscribers",
    "events_dropped": "Events not sent to a subscriber whose output was backed up (max_event_backlog)",
    "subscriptions": "Topic subscriptions (a connection and a topic each)",
    "topics": "Topics with subscribers",
    "pubsub_up": "Whether events can be published (1), or the backend (Redis) is unreachable (0)",
}


class _FactoryCollector:
    """Reads gauges and byte counters off the watched factories at scrape time."""

    def __init__(self, metrics: PrometheusMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        factories = self.metrics.factories
        live = [proto for factory in factories for proto in factory.connections]
        yield GaugeMetricFamily("jsonservice_connections", "Open connections", value=len(live))
        yield GaugeMetricFamily(
            "jsonservice_in_flight", "Requests running", value=sum(proto.in_flight for proto in live)
        )
        yield CounterMetricFamily(
            "jsonservice_connections_opened",
            "Connections accepted",
            value=sum(factory.connections_opened for factory in factories),
        )
        yield CounterMetricFamily(
            "jsonservice_received_bytes",
            "Bytes received",
            value=sum(f.closed_bytes_received for f in factories) + sum(p.bytes_received for p in live),
        )
        yield CounterMetricFamily(
            "jsonservice_sent_bytes",
            "Bytes sent",
            value=sum(f.closed_bytes_sent for f in factories) + sum(p.bytes_sent for p in live),
        )
        for name, value in pubsub_values(factories).items():
            kind = CounterMetricFamily if name.startswith("events_") else GaugeMetricFamily
            yield kind(f"jsonservice_{name}", _PUBSUB_HELP[name], value=value)


class WorkerGauges:
    """
    In a C{--workers} worker: the gauges and byte counts of L{PrometheusMetrics}'s
    factories, written to the multiprocess files every C{interval} seconds
    (the supervisor cannot read this process's factories at scrape time).
    """

    def __init__(self, metrics: PrometheusMetrics) -> None:
        from prometheus_client import Gauge

        self.metrics = metrics
        registry = metrics.registry
        # Live sums: a dead worker's open connections are gone; its byte and
        # connection totals stay in the sum ("sum" keeps them).
        self._connections = Gauge(
            "jsonservice_connections", "Open connections", registry=registry, multiprocess_mode="livesum"
        )
        self._in_flight = Gauge(
            "jsonservice_in_flight", "Requests running", registry=registry, multiprocess_mode="livesum"
        )
        self._opened = Gauge(
            "jsonservice_connections_opened_total",  # the single-process counter's sample name
            "Connections accepted",
            registry=registry,
            multiprocess_mode="sum",
        )
        self._received = Gauge(
            "jsonservice_received_bytes_total", "Bytes received", registry=registry, multiprocess_mode="sum"
        )
        self._sent = Gauge(
            "jsonservice_sent_bytes_total", "Bytes sent", registry=registry, multiprocess_mode="sum"
        )
        self._pubsub = {
            name: Gauge(
                f"jsonservice_{name}_total" if name.startswith("events_") else f"jsonservice_{name}",
                help_text,
                registry=registry,
                # Counters sum over every worker that ever ran; pubsub_up is the worst of the live ones.
                multiprocess_mode="sum"
                if name.startswith("events_")
                else ("livemin" if name == "pubsub_up" else "livesum"),
            )
            for name, help_text in _PUBSUB_HELP.items()
        }

    def update(self) -> None:
        """Write the current values."""
        factories = self.metrics.factories
        live = [proto for factory in factories for proto in factory.connections]
        self._connections.set(len(live))
        self._in_flight.set(sum(proto.in_flight for proto in live))
        self._opened.set(sum(factory.connections_opened for factory in factories))
        self._received.set(
            sum(f.closed_bytes_received for f in factories) + sum(p.bytes_received for p in live)
        )
        self._sent.set(sum(f.closed_bytes_sent for f in factories) + sum(p.bytes_sent for p in live))
        for name, value in pubsub_values(factories).items():
            self._pubsub[name].set(value)


def multiprocess_registry(directory: str) -> Any:
    """A registry that reads every worker's metrics files in C{directory} (the supervisor's)."""
    from prometheus_client import CollectorRegistry, multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    return registry


class SupervisorMetrics:
    """The C{--workers} supervisor's metrics: the sum of its workers' (multiprocess mode)."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.registry = multiprocess_registry(directory)

    def render(self) -> bytes:
        """The workers' metrics, summed, in the Prometheus text format."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry)

    def resource(self) -> MetricsPage:
        """A C{twisted.web} resource serving L{render}."""
        return MetricsPage(self)

    def worker_ended(self, pid: int) -> None:
        """Drop a dead worker's live gauges (its totals stay in the sums)."""
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, self.directory)  # type: ignore[no-untyped-call]


class MetricsPage(Resource):
    """Serves a L{PrometheusMetrics} at any path (GET)."""

    isLeaf = True

    def __init__(self, metrics: PrometheusMetrics | SupervisorMetrics) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.metrics = metrics

    def render_GET(self, request: Request) -> bytes:
        """The metrics, as C{text/plain; version=0.0.4}."""
        from prometheus_client import CONTENT_TYPE_LATEST

        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode("ascii"))
        return self.metrics.render()
