"""Process-wide counters: per-RPC counts and latencies, stages in flight, stage log lines.

Counting is plain Python arithmetic on the hot path, so it costs well under a
microsecond per call and imports nothing. prometheus-client is imported only
when the admin server renders ``/metrics`` (:func:`render`).

Other modules record through the :data:`METRICS` singleton, e.g. the stage log
persister calls ``METRICS.log_lines_sent(n)`` and ``METRICS.log_lines_dropped(n)``.
"""

from __future__ import annotations

import bisect
import threading
import typing as t

#: Upper bounds (seconds) of the latency histogram buckets. Trivial calls take
#: ~0.1-1 ms; stages take seconds to hours.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600,
)  # fmt: skip


class _Histogram:
    __slots__ = ("counts", "total", "count")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)  # the last one is +Inf
        self.total = 0.0
        self.count = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.total += seconds
        self.count += 1


class Metrics:
    """Counters of one plugin process.

    RPC counters are touched only from the event loop thread. Log line counters
    may be bumped from handler threads, so they take a lock.
    """

    def __init__(self) -> None:
        #: (method, grpc status code name) -> calls finished
        self.rpc_codes: dict[tuple[str, str], int] = {}
        #: method -> latency histogram
        self.rpc_latency: dict[str, _Histogram] = {}
        #: RPCs being served now, all methods
        self.rpcs_in_flight = 0
        #: ExecuteStage calls being served now
        self.stages_in_flight = 0
        #: ExecuteStage results by StageStatus name (what the plugin answered)
        self.stage_results: dict[str, int] = {}
        #: RPCs refused with RESOURCE_EXHAUSTED by --maximum-concurrent-rpcs
        self.rpcs_refused = 0
        self.log_lines_sent_total = 0
        self.log_lines_dropped_total = 0
        self._lock = threading.Lock()

    # -- recording ----------------------------------------------------------------

    def rpc_finished(self, method: str, code: str, seconds: float) -> None:
        """Count one finished call of ``method`` (full gRPC method path) with status ``code``."""
        key = (method, code)
        self.rpc_codes[key] = self.rpc_codes.get(key, 0) + 1
        self.latency(method).observe(seconds)

    def latency(self, method: str) -> _Histogram:
        """The latency histogram of ``method``; the guard looks it up once per method, not per call."""
        histogram = self.rpc_latency.get(method)
        if histogram is None:
            histogram = self.rpc_latency[method] = _Histogram()
        return histogram

    def stage_result(self, status_name: str) -> None:
        self.stage_results[status_name] = self.stage_results.get(status_name, 0) + 1

    def log_lines_sent(self, n: int = 1) -> None:
        """Stage log lines piped acknowledged."""
        with self._lock:
            self.log_lines_sent_total += n

    def log_lines_dropped(self, n: int = 1) -> None:
        """Stage log lines given up on (buffer full, piped unreachable)."""
        with self._lock:
            self.log_lines_dropped_total += n


#: The process's counters.
METRICS = Metrics()


def render(metrics: Metrics = METRICS) -> tuple[bytes, str]:
    """Prometheus text exposition of ``metrics`` plus process and GC metrics: (body, content type)."""
    import prometheus_client as prom
    from prometheus_client.core import CounterMetricFamily
    from prometheus_client.core import GaugeMetricFamily
    from prometheus_client.core import HistogramMetricFamily

    class Collector:
        def collect(self) -> t.Iterator[t.Any]:
            calls = CounterMetricFamily("pipeplug_rpc_requests", "gRPC calls finished, by method and status code", labels=["method", "code"])
            for (method, code), n in sorted(metrics.rpc_codes.items()):
                calls.add_metric([method, code], n)
            yield calls
            latency = HistogramMetricFamily("pipeplug_rpc_duration_seconds", "gRPC call latency, by method", labels=["method"])
            for method, h in sorted(metrics.rpc_latency.items()):
                buckets, running = [], 0
                for bound, n in zip([*map(str, LATENCY_BUCKETS), "+Inf"], h.counts):
                    running += n
                    buckets.append((bound, running))
                latency.add_metric([method], buckets, h.total)
            yield latency
            yield GaugeMetricFamily("pipeplug_rpcs_in_flight", "gRPC calls being served now", value=metrics.rpcs_in_flight)
            yield GaugeMetricFamily("pipeplug_stages_in_flight", "ExecuteStage calls being served now", value=metrics.stages_in_flight)
            results = CounterMetricFamily("pipeplug_stage_results", "ExecuteStage results the plugin answered, by status", labels=["status"])
            for status, n in sorted(metrics.stage_results.items()):
                results.add_metric([status], n)
            yield results
            yield CounterMetricFamily(
                "pipeplug_rpcs_refused", "gRPC calls refused with RESOURCE_EXHAUSTED by --maximum-concurrent-rpcs", value=metrics.rpcs_refused
            )
            yield CounterMetricFamily("pipeplug_stage_log_lines_sent", "stage log lines delivered to piped", value=metrics.log_lines_sent_total)
            yield CounterMetricFamily("pipeplug_stage_log_lines_dropped", "stage log lines given up on", value=metrics.log_lines_dropped_total)

    registry = prom.CollectorRegistry(auto_describe=False)
    registry.register(Collector())
    prom.ProcessCollector(registry=registry)
    prom.GCCollector(registry=registry)
    return prom.generate_latest(registry), prom.CONTENT_TYPE_LATEST
