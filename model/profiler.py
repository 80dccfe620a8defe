"""The workload profiler in the VMM (docs/design.md): counter snapshots in, workload data out.

Each profiler window the VMM reads one consistent snapshot of the hardware counters
(``hdl/profiler``; the fast simulator produces the same snapshots):

- per VF (``CounterSnapshot``): completed requests, payload bytes, latency sum and maximum
  (cycles from the VM's request to its response, hold time included), a latency histogram
  with power-of-two bins (``latency_bin``), the occupancy integral (sum over the window's
  cycles of the VF's outstanding requests), and where the VF ran;
- per system (``DeviceSnapshot``): window length, busy cycles per device, link words per
  direction, slots in use and slot counts per device.

``Profiler.analyse`` turns them into per-VF ``WorkloadData`` (request rate, throughput, mean
and p99 latency, utilisation) and the device ``Contention`` (host busy fraction, offload slots
used, link utilisation), the inputs of the policies in ``model/manager.py``.

A request is counted in the window in which it completes; busy cycles and link words in the
window in which they happen.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from .common import check_fraction, check_int, check_number
from .config import Device, SystemConfig

DEFAULT_BINS = 16
_INT = {int}


def latency_bin(latency: int, n_bins: int = DEFAULT_BINS) -> int:
    """Histogram bin of a latency: bin 0 holds 0, bin b (1 <= b < n_bins - 1) holds
    [2^(b-1), 2^b - 1] (the position of the leading one, cheap in hardware), the last bin
    everything from 2^(n_bins - 2) up."""
    return min(latency.bit_length(), n_bins - 1)


def bin_range(b: int, n_bins: int = DEFAULT_BINS) -> tuple[int, int | None]:
    """(lowest, highest) latency of bin ``b``; highest is None for the open last bin."""
    if not 0 <= b < n_bins:
        raise ValueError(f"bin {b} is outside 0..{n_bins - 1}")
    if b == 0:
        return 0, 0
    return 1 << (b - 1), (None if b == n_bins - 1 else (1 << b) - 1)


def histogram_percentile(histogram: Sequence[int], q: float, latency_max: int) -> float:
    """The ``q`` quantile (0 < q <= 1) of the latencies counted in a power-of-two histogram.

    The quantile is the latency of rank ceil(q * n) (the nearest-rank definition). Inside
    its bin the latencies are assumed spread evenly from the bin's lowest value to its
    highest, clipped to ``latency_max`` (the open last bin ends there): the error is below
    the bin width, i.e. under a factor of 2. Returns 0.0 for an empty histogram."""
    if not 0 < q <= 1:
        raise ValueError(f"quantile must be in (0, 1], not {q!r}")
    total = sum(histogram)
    if total == 0:
        return 0.0
    rank = max(1, math.ceil(q * total - 1e-9))
    n_bins = len(histogram)
    below = 0
    for b, count in enumerate(histogram):
        if count and below + count >= rank:
            lo, hi = bin_range(b, n_bins)
            hi = latency_max if hi is None else min(hi, latency_max)
            hi = max(hi, lo)
            # rank r of n in a bin [lo, hi]: the r-th of n evenly spaced points, last = hi
            return lo + (hi - lo) * (rank - below) / count
        below += count
    raise AssertionError("unreachable: rank <= total")


@dataclass(frozen=True)
class CounterSnapshot:
    """One VF's counters over one window (what ``hdl/profiler`` exposes per VF)."""
    vf: int
    device: Device
    requests: int = 0
    bytes: int = 0
    latency_sum: int = 0
    latency_max: int = 0
    histogram: tuple[int, ...] = (0,) * DEFAULT_BINS
    occupancy: int = 0  # sum over cycles of outstanding requests (Little: ~= latency_sum)

    def __post_init__(self):
        # Checked with plain type tests: the fast simulator builds ~10^5 of these per run.
        values = (self.vf, self.requests, self.bytes, self.latency_sum, self.latency_max,
                  self.occupancy)
        if set(map(type, values)) != _INT or min(values) < 0:
            for name in ("vf", "requests", "bytes", "latency_sum", "latency_max", "occupancy"):
                check_int("CounterSnapshot", name, getattr(self, name), 0)
        if type(self.device) is not Device:
            object.__setattr__(self, "device", Device(self.device))
        hist = self.histogram
        if type(hist) is not tuple:
            hist = tuple(hist)
            object.__setattr__(self, "histogram", hist)
        if len(hist) < 2:
            raise ValueError(f"CounterSnapshot.histogram needs at least 2 bins, not {len(hist)}")
        if set(map(type, hist)) != _INT or min(hist) < 0:
            raise ValueError(f"CounterSnapshot.histogram must hold integers >= 0, not {hist!r}")
        if sum(hist) != self.requests:
            raise ValueError(f"CounterSnapshot of VF {self.vf}: the histogram counts "
                             f"{sum(hist)} requests, the counter {self.requests}")
        if self.requests and self.latency_max > self.latency_sum:
            raise ValueError(f"CounterSnapshot of VF {self.vf}: latency_max "
                             f"{self.latency_max} exceeds latency_sum {self.latency_sum}")


@dataclass(frozen=True)
class DeviceSnapshot:
    """System-level counters over one window. Tuples are indexed by ``Device`` (busy,
    slots) or by link direction (0: toward the offload device, 1: toward the host)."""
    window: int
    busy: tuple[int, int] = (0, 0)
    link_words: tuple[int, int] = (0, 0)
    link_words_per_cycle: float = 1.0  # per direction; 0 when there is no link
    slots_used: tuple[int, int] = (0, 0)
    slots: tuple[int, int] = (1, 1)

    def __post_init__(self):
        check_int("DeviceSnapshot", "window", self.window, 1)
        for name in ("busy", "link_words", "slots_used", "slots"):
            value = tuple(getattr(self, name))
            if len(value) != 2:
                raise ValueError(f"DeviceSnapshot.{name} must hold 2 values, not {value!r}")
            for v in value:
                check_int("DeviceSnapshot", name, v, 0)
            object.__setattr__(self, name, value)
        for d in Device:
            if self.busy[d] > self.window:
                raise ValueError(f"DeviceSnapshot.busy[{d.label}] = {self.busy[d]} exceeds the "
                                 f"window of {self.window} cycles")
        if (not isinstance(self.link_words_per_cycle, (int, float))
                or self.link_words_per_cycle < 0):
            raise ValueError(f"DeviceSnapshot.link_words_per_cycle must be >= 0, not "
                             f"{self.link_words_per_cycle!r}")


@dataclass(frozen=True)
class WorkloadData:
    """What the profiler tells the VF Manager about one VF over one window."""
    vf: int
    device: Device
    requests: int
    rate: float            # requests per cycle
    throughput: float      # payload bytes per cycle
    words_per_request: float  # mean payload words of a request (0 without requests)
    mean_latency: float    # cycles
    p99_latency: float     # cycles, from the histogram (histogram_percentile)
    max_latency: int       # cycles
    utilisation: float     # share of its device's service time this VF used
    occupancy: float       # mean outstanding requests

    @property
    def active(self) -> bool:
        return self.requests > 0


@dataclass(frozen=True)
class Contention:
    """Device-level load over one window."""
    window: int
    host_busy: float          # fraction of the window the host VF unit was serving
    offload_busy: float
    host_slots_used: int
    host_slots: int
    offload_slots_used: int
    offload_slots: int
    link_to_offload: float    # utilisation per direction (0 without a link)
    link_to_host: float

    @property
    def link_utilisation(self) -> float:
        """The busier direction."""
        return max(self.link_to_offload, self.link_to_host)

    @property
    def offload_slots_free(self) -> int:
        return self.offload_slots - self.offload_slots_used

    @property
    def host_slots_free(self) -> int:
        return self.host_slots - self.host_slots_used

    def busy(self, device: Device) -> float:
        return self.host_busy if device == Device.HOST else self.offload_busy


@dataclass(frozen=True)
class WindowReport:
    """One window analysed: ``workloads[vf]`` for every VF, and the contention."""
    end: int  # cycle at which the window closed
    workloads: tuple[WorkloadData, ...]
    contention: Contention


class Profiler:
    """Turns counter snapshots into workload data.

    ``service_cycles(device, words)`` is the time the device's VF unit spends on a request:
    its latency plus ``cycles_per_word`` per further word. It gives a VF's utilisation from
    its request and byte counts, the same way the hardware spends it."""

    def __init__(self, host_latency: int = 12, offload_latency: int = 3,
                 cycles_per_word: float = 1.0, quantile: float = 0.99):
        check_int("Profiler", "host_latency", host_latency, 1)
        check_int("Profiler", "offload_latency", offload_latency, 1)
        check_number("Profiler", "cycles_per_word", cycles_per_word, 0)
        check_fraction("Profiler", "quantile", quantile, low_open=True)
        self.latency = (host_latency, offload_latency)
        self.cycles_per_word = cycles_per_word
        self.quantile = quantile

    @classmethod
    def from_config(cls, config: SystemConfig, **kwargs) -> Profiler:
        return cls(config.host_latency, config.offload_latency, **kwargs)

    def service_cycles(self, device: Device, words: float) -> float:
        """Cycles one request of ``words`` words occupies ``device``'s VF unit."""
        return self.latency[device] + self.cycles_per_word * (words - 1)

    def workload(self, snap: CounterSnapshot, window: int) -> WorkloadData:
        n = snap.requests
        words = snap.bytes / 4
        wpr = words / n if n else 0.0
        busy = n * self.latency[snap.device] + self.cycles_per_word * (words - n) if n else 0.0
        return WorkloadData(
            vf=snap.vf, device=snap.device, requests=n, rate=n / window,
            throughput=snap.bytes / window, words_per_request=wpr,
            mean_latency=snap.latency_sum / n if n else 0.0,
            p99_latency=histogram_percentile(snap.histogram, self.quantile, snap.latency_max),
            max_latency=snap.latency_max, utilisation=busy / window,
            occupancy=snap.occupancy / window)

    def contention(self, dev: DeviceSnapshot) -> Contention:
        w = dev.window
        cap = dev.link_words_per_cycle * w
        return Contention(
            window=w, host_busy=dev.busy[Device.HOST] / w,
            offload_busy=dev.busy[Device.OFFLOAD] / w,
            host_slots_used=dev.slots_used[Device.HOST], host_slots=dev.slots[Device.HOST],
            offload_slots_used=dev.slots_used[Device.OFFLOAD],
            offload_slots=dev.slots[Device.OFFLOAD],
            link_to_offload=dev.link_words[0] / cap if cap else 0.0,
            link_to_host=dev.link_words[1] / cap if cap else 0.0)

    def analyse(self, snapshots: Sequence[CounterSnapshot], device: DeviceSnapshot,
                end: int = 0) -> WindowReport:
        """``snapshots`` holds one snapshot per VF, VF ``i`` at index ``i``."""
        for i, snap in enumerate(snapshots):
            if snap.vf != i:
                raise ValueError(f"Profiler.analyse: snapshot {i} is of VF {snap.vf}; pass one "
                                 f"snapshot per VF in VF order")
        return WindowReport(end, tuple(self.workload(s, device.window) for s in snapshots),
                            self.contention(device))
