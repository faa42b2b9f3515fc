"""Opt-in Prometheus metrics (`--metrics unix:PATH` or `--metrics HOST:PORT`), off by default.

Why a separate listener and not a Varlink method: the metrics are the host operator's, read by
a scraper that speaks HTTP, and must never be reachable from a zone (the broker's socket is in
every zone; a metrics socket is not). The text comes from prometheus_client's own registry and
exposition code; the HTTP around it is the least a scraper and `curl` need (one GET, one
response, close), served on the broker's event loop so the gauges read the tables between two
calls, never in the middle of one.

Cardinality is bounded by what the broker knows, never by what a caller sends: the method
label is one of the contract's methods (anything else counts as "unknown"), the outcome one of
the contract's error names, link classes and zone kinds are closed sets. Zone names are not
labels at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from broker._dispatch import INTERFACE, METHODS
from broker._netlink import KernelLink
from broker._service import Broker

__all__ = ["Metrics", "MetricsEndpoint", "parse_endpoint"]

log = logging.getLogger("linkbroker.metrics")
_SERVICE_METHODS = {"org.varlink.service.GetInfo", "org.varlink.service.GetInterfaceDescription"}
_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
            1.0, 2.5, 10.0)
_REQUEST_LIMIT = 8192
_REQUEST_TIMEOUT = 5.0


class _Tables(Collector):
    """Gauges computed at scrape time from the broker's own tables: nothing to keep in step."""

    def __init__(self, broker: Broker, connections: Callable[[], int]) -> None:
        self.broker = broker
        self.connections = connections

    def collect(self) -> Iterator[Metric]:
        links = GaugeMetricFamily("linkbroker_links", "Links in the table, by class",
                                  labels=["class"])
        by_class: dict[str, int] = {}
        for link in self.broker.links:
            by_class[link.cls] = by_class.get(link.cls, 0) + 1
        for cls, n in sorted(by_class.items()):
            links.add_metric([cls], n)
        yield links
        zones = GaugeMetricFamily("linkbroker_zones", "Booted zones (the global zone "
                                  "included), by kind", labels=["kind"])
        by_kind: dict[str, int] = {}
        for zone in self.broker.zones:
            by_kind[zone.kind] = by_kind.get(zone.kind, 0) + 1
        for kind, n in sorted(by_kind.items()):
            zones.add_metric([kind], n)
        yield zones
        yield GaugeMetricFamily("linkbroker_connections", "Connections open now",
                                value=self.connections())
        resyncs = CounterMetricFamily("linkbroker_resyncs", "Zone monitor passes after link "
                                      "notifications: dumped (the zone re-read) or answered "
                                      "(the notifications held nothing the table lacked)",
                                      labels=["outcome"])
        for outcome, n in sorted(self.broker.resyncs.items()):
            resyncs.add_metric([outcome], n)
        yield resyncs


class Metrics:
    """The counters, fed by the server (broker._server.Observer) and the daemon."""

    def __init__(self, broker: Broker, connections: Callable[[], int]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.calls = Counter("linkbroker_calls", "Calls answered, by method and outcome (ok "
                             "or the error's name)", ["method", "outcome"],
                             registry=self.registry)
        self.latency = Histogram("linkbroker_call_duration_seconds", "Time from a call's "
                                 "frame to its reply, by method", ["method"],
                                 buckets=_BUCKETS, registry=self.registry)
        self.rejections = Counter("linkbroker_connection_rejections", "Connections refused at "
                                  "a limit: total, per_zone or unregistered", ["limit"],
                                  registry=self.registry)
        self.drift = Counter("linkbroker_reconcile_drift_events", "Link events reconciliation "
                             "published: the kernel changed behind the broker's back",
                             registry=self.registry)
        self.netlink_errors = Counter("linkbroker_netlink_errors", "Calls the kernel refused "
                                      "(KernelError replies)", registry=self.registry)
        self.registry.register(_Tables(broker, connections))
        ProcessCollector(registry=self.registry)  # process_open_fds, memory, CPU
        self._wrap_reconcile(broker)

    def _wrap_reconcile(self, broker: Broker) -> None:
        """Count the events reconciliation publishes: each is drift between the table and the
        kernel (a link added, removed, renamed or changed outside the broker). Not a zone's
        first reconciliation after BootZone, which only learns what the zone came with;
        the first one after a broker restart counts, since the table was there to differ."""
        inner = broker.reconcile_zone
        known: set[tuple[str, int]] = set()  # (zone, netns inode) reconciled before

        def reconcile_zone(zone: str, found: list[KernelLink]) -> None:
            record = broker.zones.get(zone)
            key = (zone, record.netns_inode if record is not None else 0)
            drift = key in known or bool(broker.links.in_zone(zone))
            before = broker.events.seq
            inner(zone, found)
            known.add(key)
            if drift and broker.events.seq > before:
                self.drift.inc(broker.events.seq - before)

        broker.reconcile_zone = reconcile_zone  # type: ignore[method-assign]

    def call_done(self, method: str, outcome: str, seconds: float) -> None:
        name = method.removeprefix(f"{INTERFACE}.")
        if name not in METHODS and method not in _SERVICE_METHODS:
            name = "unknown"
        self.calls.labels(name, outcome).inc()
        self.latency.labels(name).observe(seconds)
        if outcome == "KernelError":
            self.netlink_errors.inc()

    def refused(self, limit: str) -> None:
        self.rejections.labels(limit).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


def parse_endpoint(spec: str) -> tuple[str, str | int]:
    """`unix:PATH` -> ("unix", PATH); `HOST:PORT` -> (HOST, PORT). ValueError if neither."""
    if spec.startswith("unix:"):
        path = spec[5:]
        if not path.startswith("/"):
            raise ValueError(f"--metrics {spec}: unix: needs an absolute path")
        return "unix", path
    host, sep, port = spec.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--metrics {spec!r}: expected unix:PATH or HOST:PORT "
                         "(e.g. 127.0.0.1:9479)")
    return host.strip("[]"), int(port)


class MetricsEndpoint:
    """The HTTP listener: GET /metrics (or /) answers the text format; anything else 404."""

    def __init__(self, metrics: Metrics, spec: str) -> None:
        self.metrics = metrics
        self.where = parse_endpoint(spec)
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        host, port = self.where
        if host == "unix":
            assert isinstance(port, str)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(port)
            os.makedirs(os.path.dirname(port), mode=0o755, exist_ok=True)
            self._server = await asyncio.start_unix_server(self._handle, path=port)
            os.chmod(port, 0o600)  # the host operator's (and its scraper's), no zone's
        else:
            self._server = await asyncio.start_server(self._handle, host=host, port=port)
        log.info("metrics on %s", ":".join(map(str, self.where)))

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        host, path = self.where
        if host == "unix":
            assert isinstance(path, str)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _REQUEST_TIMEOUT)
            method, _, rest = head[:_REQUEST_LIMIT].partition(b" ")
            path = rest.partition(b" ")[0].partition(b"?")[0]
            if method not in (b"GET", b"HEAD"):
                writer.write(_response(405, b"only GET\n", "text/plain"))
            elif path not in (b"/metrics", b"/"):
                writer.write(_response(404, b"see /metrics\n", "text/plain"))
            else:
                body = self.metrics.render()
                writer.write(_response(200, b"" if method == b"HEAD" else body,
                                       CONTENT_TYPE_LATEST, len(body)))
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError,
                ConnectionError):
            pass
        finally:
            writer.close()


def _response(code: int, body: bytes, content_type: str, length: int | None = None) -> bytes:
    reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed"}[code]
    head = (f"HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body) if length is None else length}\r\n"
            "Connection: close\r\n\r\n")
    return head.encode() + body
