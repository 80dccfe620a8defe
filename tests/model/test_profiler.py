"""The workload profiler (model/profiler.py): counter snapshots -> workload data."""

from __future__ import annotations

import math
import random

import pytest

from model.config import Device, SystemConfig
from model.profiler import (
    DEFAULT_BINS,
    CounterSnapshot,
    DeviceSnapshot,
    Profiler,
    bin_range,
    histogram_percentile,
    latency_bin,
)


def histogram_of(latencies, n_bins=DEFAULT_BINS):
    hist = [0] * n_bins
    for lat in latencies:
        hist[latency_bin(lat, n_bins)] += 1
    return tuple(hist)


def snapshot_of(vf, device, latencies, words):
    """A snapshot as the hardware would count it, from per-request latencies and sizes."""
    return CounterSnapshot(vf, device, requests=len(latencies), bytes=4 * sum(words),
                           latency_sum=sum(latencies), latency_max=max(latencies, default=0),
                           histogram=histogram_of(latencies), occupancy=sum(latencies))


def nearest_rank(values, q):
    ordered = sorted(values)
    return ordered[math.ceil(q * len(ordered)) - 1]


@pytest.mark.parametrize("latency, expected", [
    (0, 0), (1, 1), (2, 2), (3, 2), (4, 3), (7, 3), (8, 4), (1023, 10), (1024, 11),
    (1 << 14, 15), (10**9, 15)])
def test_latency_bin_is_leading_one_position(latency, expected):
    assert latency_bin(latency) == expected
    lo, hi = bin_range(expected)
    assert lo <= latency and (hi is None or latency <= hi)


def test_bin_range_edges_and_error():
    assert bin_range(0) == (0, 0)
    assert bin_range(5) == (16, 31)
    assert bin_range(DEFAULT_BINS - 1) == (1 << (DEFAULT_BINS - 2), None)
    with pytest.raises(ValueError, match=r"bin 16 is outside 0\.\.15"):
        bin_range(16)


def test_percentile_of_one_value_is_exact():
    hist = histogram_of([100] * 50)
    assert histogram_percentile(hist, 0.99, latency_max=100) == 100.0


def test_percentile_interpolates_inside_the_bin():
    # 100 requests, 90 at latency 1 (bin 1), 10 spread in bin 5 [16, 31] with max 31:
    # rank 99 is the 9th of the 10 in bin 5 -> 16 + 15 * 9/10.
    hist = histogram_of([1] * 90 + list(range(16, 26)))
    assert histogram_percentile(hist, 0.99, latency_max=31) == pytest.approx(16 + 15 * 0.9)
    # the open last bin ends at the maximum latency
    hist = [0] * DEFAULT_BINS
    hist[-1] = 4
    assert histogram_percentile(hist, 1.0, latency_max=50_000) == 50_000


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_percentile_within_the_bin_of_the_true_p99(seed):
    rng = random.Random(seed)
    lats = [int(rng.expovariate(1 / 200)) for _ in range(5000)]
    true_p99 = nearest_rank(lats, 0.99)
    est = histogram_percentile(histogram_of(lats), 0.99, max(lats))
    lo, hi = bin_range(latency_bin(true_p99))
    assert lo <= est <= (hi if hi is not None else max(lats))
    assert true_p99 / 2 <= est <= true_p99 * 2


def test_percentile_edge_cases():
    assert histogram_percentile([0] * 8, 0.99, 0) == 0.0
    with pytest.raises(ValueError, match=r"quantile must be in \(0, 1\], not 0"):
        histogram_percentile([1, 0], 0, 0)


def test_counter_snapshot_validation_names_the_field():
    with pytest.raises(ValueError, match=r"CounterSnapshot requests must be at least 0, "
                                         r"not -1"):
        CounterSnapshot(0, Device.HOST, requests=-1)
    with pytest.raises(ValueError, match=r"the histogram counts 1 requests, the counter 2"):
        CounterSnapshot(3, Device.HOST, requests=2, latency_sum=20, latency_max=10,
                        histogram=(0, 1) + (0,) * 14)
    with pytest.raises(ValueError, match=r"latency_max 30 exceeds latency_sum 20"):
        CounterSnapshot(3, Device.HOST, requests=1, latency_sum=20, latency_max=30,
                        histogram=(0, 1) + (0,) * 14)
    with pytest.raises(ValueError, match=r"histogram needs at least 2 bins"):
        CounterSnapshot(0, Device.HOST, histogram=(0,))
    with pytest.raises(ValueError, match=r"histogram must hold integers >= 0"):
        CounterSnapshot(0, Device.HOST, histogram=(0, -1, 1))


def test_device_snapshot_validation():
    with pytest.raises(ValueError, match=r"DeviceSnapshot window must be at least 1"):
        DeviceSnapshot(0)
    with pytest.raises(ValueError, match=r"busy\[offload\] = 200 exceeds the window of 100"):
        DeviceSnapshot(100, busy=(10, 200))
    with pytest.raises(ValueError, match=r"DeviceSnapshot.slots must hold 2 values"):
        DeviceSnapshot(100, slots=(1, 2, 3))


def test_profiler_parameters_are_checked():
    with pytest.raises(ValueError, match=r"Profiler host_latency must be at least 1"):
        Profiler(host_latency=0)
    with pytest.raises(ValueError, match=r"Profiler quantile must be in \(0, 1\]"):
        Profiler(quantile=1.5)
    with pytest.raises(ValueError, match=r"Profiler cycles_per_word must be at least 0"):
        Profiler(cycles_per_word=-1)


def test_workload_data_from_counters():
    rng = random.Random(7)
    window = 10_000
    words = [rng.choice([1, 1, 1, 64]) for _ in range(120)]
    lats = [rng.randrange(5, 400) for _ in words]
    prof = Profiler(host_latency=12, offload_latency=3)
    wd = prof.workload(snapshot_of(4, Device.HOST, lats, words), window)
    assert wd.vf == 4 and wd.device == Device.HOST and wd.active
    assert wd.rate == pytest.approx(120 / window)
    assert wd.throughput == pytest.approx(4 * sum(words) / window)
    assert wd.words_per_request == pytest.approx(sum(words) / 120)
    assert wd.mean_latency == pytest.approx(sum(lats) / 120)
    assert wd.max_latency == max(lats)
    # the VF unit is busy 12 cycles per request plus 1 per further word
    assert wd.utilisation == pytest.approx(sum(12 + w - 1 for w in words) / window)
    assert wd.occupancy == pytest.approx(sum(lats) / window)
    true_p99 = nearest_rank(lats, 0.99)
    assert true_p99 / 2 <= wd.p99_latency <= 2 * true_p99
    on_offload = prof.workload(snapshot_of(4, Device.OFFLOAD, lats, words), window)
    assert on_offload.utilisation == pytest.approx(sum(3 + w - 1 for w in words) / window)


def test_idle_vf_gives_zeros():
    wd = Profiler().workload(CounterSnapshot(1, Device.OFFLOAD), 1000)
    assert (wd.requests, wd.rate, wd.mean_latency, wd.p99_latency, wd.utilisation) == \
        (0, 0.0, 0.0, 0.0, 0.0)
    assert not wd.active


def test_contention_and_analyse():
    prof = Profiler.from_config(SystemConfig())
    dev = DeviceSnapshot(2000, busy=(1500, 100), link_words=(500, 1000),
                         link_words_per_cycle=2.0, slots_used=(6, 3), slots=(8, 4))
    snaps = [snapshot_of(0, Device.HOST, [20, 30], [1, 1]),
             CounterSnapshot(1, Device.OFFLOAD)]
    report = prof.analyse(snaps, dev, end=2000)
    c = report.contention
    assert (c.host_busy, c.offload_busy) == (0.75, 0.05)
    assert (c.offload_slots_used, c.offload_slots_free, c.host_slots_free) == (3, 1, 2)
    assert c.link_to_offload == pytest.approx(500 / 4000)
    assert c.link_utilisation == pytest.approx(1000 / 4000)
    assert c.busy(Device.HOST) == 0.75
    assert [w.vf for w in report.workloads] == [0, 1] and report.end == 2000
    no_link = prof.contention(DeviceSnapshot(100, link_words_per_cycle=0))
    assert no_link.link_utilisation == 0.0
    with pytest.raises(ValueError, match=r"snapshot 0 is of VF 1; pass one snapshot per VF"):
        prof.analyse([CounterSnapshot(1, Device.HOST)], dev)
