"""Prometheus metrics of one app: requests (fed by the middleware), batches and loads (fed by the registry's events),
and every slot's figures (read at scrape time).

Each app owns its ``CollectorRegistry`` (never the process-wide default one: tests build many apps in one process, and
two apps must not count into each other). Label values are bounded by the code or the configuration, never by
clients: ``slot`` (an index), ``state`` (a lifecycle phase), ``protocol`` (four names), ``code`` (an HTTP status),
``strategy`` (four names). Client ids and model names never appear.

Counting is on the request path, so it is plain Python arithmetic, not prometheus-client's ``Counter`` and
``Histogram`` (a lock per update: ~4 us a request here against ~0.5 us). That is safe because every update and every
scrape runs on the event loop's thread: the middleware, the batch queues' workers and the load tasks all do. The
figures become Prometheus metric families only when scraped.
"""

from bisect import bisect_left
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from app.registry.lifecycle import Phase

if TYPE_CHECKING:
    from app.registry.records import SlotRecord

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PROTOCOLS = ("native", "v2", "tfserving", "other")
STRATEGIES = ("load", "side_by_side", "replace", "restore", "takeover")
REQUEST_BUCKETS = (.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30)
BATCH_BUCKETS = tuple(float(1 << k) for k in range(17))  # 1 .. 65536 rows (max_rows' default)
LOAD_BUCKETS = (.05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300)


def protocol_of(path: str) -> str:
    """Which API a path belongs to: ``v2`` (/v2...), ``tfserving`` (/v1/models/...), ``native`` (the rest of /v1,
    /v1/models itself included) or ``other`` (health, docs, metrics, unknown paths)."""
    if path.startswith("/v1/"):
        return "tfserving" if path.startswith("/v1/models/") else "native"
    if path.startswith("/v2/") or path == "/v2":
        return "v2"
    return "other"


class Distribution:
    """One histogram series: a count per bucket (not yet cumulative), their sum and total."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one: above every bound (+Inf)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # the first bucket whose bound is >= value ("le")
        self.sum += value

    def buckets(self) -> list[tuple[str, float]]:
        """Prometheus's cumulative buckets, ``+Inf`` last."""
        total, cumulative = 0, []
        for bound, count in zip((*map(floatToGoString, self.bounds), "+Inf"), self.counts, strict=True):
            total += count
            cumulative.append((bound, total))
        return cumulative


class Metrics:
    """The app's metrics. The middleware calls ``request`` once per request; the registry's events call
    ``model_loaded`` and ``batch_ran``; the /metrics route calls ``render`` with slot records it has just read."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, int], int] = {}  # (protocol, status) -> requests answered
        self.durations = {protocol: Distribution(REQUEST_BUCKETS) for protocol in PROTOCOLS}
        self.batch_sizes = Distribution(BATCH_BUCKETS)
        self.loads = {strategy: Distribution(LOAD_BUCKETS) for strategy in STRATEGIES}
        self._slots: "Iterable[SlotRecord]" = ()
        self.registry = CollectorRegistry()
        self.registry.register(self)  # type: ignore[arg-type] - a collector is anything with collect()

    def request(self, path: str, status: int, seconds: float) -> None:
        """Count one answered request (on every request: a dict update and a bisect)."""
        protocol = protocol_of(path)
        key = (protocol, status)
        self.requests[key] = self.requests.get(key, 0) + 1
        self.durations[protocol].observe(seconds)

    def model_loaded(self, strategy: str, seconds: float) -> None:
        if strategy in self.loads:
            self.loads[strategy].observe(seconds)

    def batch_ran(self, rows: int) -> None:
        self.batch_sizes.observe(rows)

    def render(self, slots: "Iterable[SlotRecord]") -> bytes:
        """The exposition text, with ``slots``' figures (read by the caller: on a GPU that is off the event loop).
        Synchronous, so two scrapes never mix their records."""
        self._slots = slots
        try:
            return generate_latest(self.registry)
        finally:
            self._slots = ()

    def collect(self) -> Iterator[Metric]:
        """Every metric family, for ``generate_latest``."""
        requests = CounterMetricFamily("slotserve_requests", "Requests answered, by API and HTTP status.",
                                       labels=["protocol", "code"])
        for (protocol, status), count in sorted(self.requests.items()):
            requests.add_metric([protocol, str(status)], count)
        yield requests
        yield _histogram("slotserve_request_duration_seconds", "Time from a request's arrival to the end of its "
                         "answer, by API.", "protocol", self.durations)
        batches = HistogramMetricFamily("slotserve_batch_size", "Rows per call of a model's function (dynamic "
                                        "batching stacks requests into one call).")
        batches.add_metric([], self.batch_sizes.buckets(), self.batch_sizes.sum)
        yield batches
        yield _histogram("slotserve_model_load_seconds", "Time of successful loads, swaps and restores, from the "
                         "request to the model serving, by strategy: load (into an empty slot), side_by_side, replace, "
                         "restore (at start-up), takeover (of a client another replica held).", "strategy", self.loads)
        yield from _slot_families(self._slots)


def _histogram(name: str, doc: str, label: str, series: dict[str, Distribution]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=[label])
    for value, distribution in series.items():
        family.add_metric([value], distribution.buckets(), distribution.sum)
    return family


def _slot_families(records: "Iterable[SlotRecord]") -> Iterator[Metric]:
    """Every slot's limit, in-use and peak bytes, one-hot phase, and residue."""
    limit = GaugeMetricFamily("slotserve_slot_memory_limit_bytes", "The slot's memory limit.", labels=["slot"])
    in_use = GaugeMetricFamily("slotserve_slot_memory_in_use_bytes", "Bytes the slot holds now (its allocator on a "
                               "GPU, its models' tensors on a CPU).", labels=["slot"])
    peak = GaugeMetricFamily("slotserve_slot_memory_peak_bytes", "The most bytes the slot held since its last load "
                             "began.", labels=["slot"])
    state = GaugeMetricFamily("slotserve_slot_state", "1 for the slot's lifecycle phase, 0 for the others.",
                              labels=["slot", "state"])
    residue = CounterMetricFamily("slotserve_residue_bytes", "Bytes that unloads and swaps in the slot failed to "
                                  "free, added up since the server started (0 when all is well).", labels=["slot"])
    for record in records:
        slot = str(record.slot)
        limit.add_metric([slot], record.memory.limit_bytes)
        in_use.add_metric([slot], record.memory.in_use_bytes)
        peak.add_metric([slot], record.memory.peak_bytes)
        for phase in Phase:
            state.add_metric([slot, phase.value], 1.0 if record.state == phase.value else 0.0)
        residue.add_metric([slot], record.residue_bytes)
    yield from (limit, in_use, peak, state, residue)
