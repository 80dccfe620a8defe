"""Workload classes, the benchmark mix and trace files (model/workload.py)."""

from __future__ import annotations

from collections import Counter

import pytest

from model.state import ImageLayout, Op
from model.workload import (
    Bursty,
    Idle,
    LatencySensitive,
    PhaseChanging,
    Request,
    ThroughputHeavy,
    TraceError,
    TraceWorkload,
    Workload,
    load_trace,
    parse_trace,
    phase_mix,
    write_trace,
)

LAYOUT = ImageLayout()
DURATION = 400_000


def stream(cls, duration=DURATION, seed=1, vf=0):
    classes = (Idle(),) * vf + (cls,)
    return list(Workload(classes, duration, seed).stream(vf))


def check_well_formed(reqs, duration=DURATION):
    assert all(0 <= r.cycle < duration for r in reqs)
    assert all(a.cycle <= b.cycle for a, b in zip(reqs, reqs[1:], strict=False))
    for r in reqs:
        assert r.words >= 1
        if r.op == Op.NOTIFY:
            assert r.words == 1 and 0 <= r.data < LAYOUT.msix_vectors
        else:
            assert 0 <= r.addr and r.addr + r.words <= LAYOUT.image_words


def test_same_seed_same_stream_other_seed_other_stream():
    cls = LatencySensitive(mean_gap=500)
    assert stream(cls, seed=5) == stream(cls, seed=5)
    assert stream(cls, seed=5) != stream(cls, seed=6)


def test_adding_vfs_keeps_the_other_streams():
    small = Workload((LatencySensitive(), Bursty()), DURATION, seed=3)
    big = Workload((LatencySensitive(), Bursty(), ThroughputHeavy()), DURATION, seed=3)
    for vf in range(2):
        assert list(small.stream(vf)) == list(big.stream(vf))


def test_latency_sensitive():
    reqs = stream(LatencySensitive(mean_gap=200, notify=0.25, write=0.3))
    check_well_formed(reqs)
    assert all(r.words == 1 for r in reqs)
    n = len(reqs)
    assert abs(n - DURATION / 200) < 0.1 * DURATION / 200  # Poisson: ~2000 +- 45
    ops = Counter(r.op for r in reqs)
    assert abs(ops[Op.NOTIFY] / n - 0.25) < 0.05
    assert abs((ops[Op.WRITE] + ops[Op.ADD]) / n - 0.3) < 0.05
    hot = {r.addr // LAYOUT.block_words for r in reqs if r.op != Op.NOTIFY}
    assert len(hot) == 1  # a one-block hot set: pre-copy converges


def test_throughput_heavy():
    cls = ThroughputHeavy(mean_gap=1000, min_words=64, max_words=128)
    reqs = stream(cls)
    check_well_formed(reqs)
    assert all(64 <= r.words <= 128 for r in reqs)
    assert {r.op for r in reqs} == {Op.READ, Op.WRITE}
    assert abs(len(reqs) - DURATION * cls.mean_rate()) < 0.15 * DURATION * cls.mean_rate()


def test_bursty_comes_in_bursts():
    cls = Bursty(burst_gap=20, burst_requests=30, silence=50_000)
    reqs = stream(cls, duration=2_000_000)
    check_well_formed(reqs, 2_000_000)
    gaps = [b.cycle - a.cycle for a, b in zip(reqs, reqs[1:], strict=False)]
    assert sum(g < 200 for g in gaps) > 0.8 * len(gaps)   # inside bursts
    assert sum(g > 5_000 for g in gaps) >= 10              # silences between them
    expected = 2_000_000 * cls.mean_rate()
    assert 0.6 * expected < len(reqs) < 1.4 * expected


def test_idle_is_rare():
    reqs = stream(Idle(mean_gap=50_000), duration=2_000_000)
    check_well_formed(reqs, 2_000_000)
    assert 20 <= len(reqs) <= 65


def test_phase_changing_switches_class():
    lat, thr = LatencySensitive(mean_gap=100), ThroughputHeavy(mean_gap=2000)
    cls = PhaseChanging(((100_000, lat), (100_000, thr)))
    reqs = stream(cls)
    check_well_formed(reqs)
    for r in reqs:
        phase = (r.cycle // 100_000) % 2
        assert (r.words == 1) == (phase == 0)
    assert cls.class_at(50_000) is lat and cls.class_at(150_000) is thr
    assert cls.class_at(250_000) is lat
    shifted = PhaseChanging(((100_000, lat), (100_000, thr)), offset=100_000)
    assert shifted.class_at(0) is thr
    assert all((r.words == 1) == ((r.cycle // 100_000) % 2 == 1) for r in stream(shifted))
    assert cls.mean_rate() == pytest.approx((lat.mean_rate() + thr.mean_rate()) / 2)
    assert cls.label == "phase(latency>throughput)"


def test_class_parameters_are_checked():
    with pytest.raises(ValueError, match=r"LatencySensitive mean_gap must be greater than 0, "
                                         r"not 0"):
        LatencySensitive(mean_gap=0)
    with pytest.raises(ValueError, match=r"LatencySensitive.notify \+ write must be <= 1"):
        LatencySensitive(notify=0.6, write=0.6)
    with pytest.raises(ValueError, match=r"ThroughputHeavy.max_words \(8\) must be >= "
                                         r"min_words \(16\)"):
        ThroughputHeavy(min_words=16, max_words=8)
    with pytest.raises(ValueError, match=r"Bursty silence must be greater than 0"):
        Bursty(silence=-1)
    with pytest.raises(ValueError, match=r"PhaseChanging.phases must hold at least one"):
        PhaseChanging(())
    with pytest.raises(ValueError, match=r"PhaseChanging phases\[0\] cycles must be at "
                                         r"least 1"):
        PhaseChanging(((0, Idle()),))
    with pytest.raises(ValueError, match=r"Workload duration must be at least 1"):
        Workload((Idle(),), 0)
    with pytest.raises(ValueError, match=r"phase_mix n_vfs must be at least 1"):
        phase_mix(0, 1000)


def test_phase_mix_proportions_and_determinism():
    wl = phase_mix(256, 100_000, seed=4)
    kinds = Counter(c.name for c in wl.classes)
    assert kinds == {"latency": 48, "throughput": 24, "bursty": 48, "idle": 80, "phase": 56}
    assert phase_mix(256, 100_000, seed=4) == wl
    assert phase_mix(256, 100_000, seed=5) != wl
    assert phase_mix(100, 1000).n_vfs == 100
    # 4x the VFs at a quarter of the rate each: the same total load
    small, big = phase_mix(256, 10**6, 1), phase_mix(1024, 10**6, 1)
    assert big.expected_requests() == pytest.approx(small.expected_requests(), rel=0.15)


def test_merged_requests_are_in_time_order():
    wl = phase_mix(32, 200_000, seed=2)
    merged = list(wl.requests())
    assert [(r.cycle, r.vf) for r in merged] == sorted((r.cycle, r.vf) for r in merged)
    assert len(merged) == sum(len(list(wl.stream(vf))) for vf in range(32))


# ---------------------------------------------------------------- traces
def test_trace_round_trip(tmp_path):
    wl = phase_mix(16, 300_000, seed=9)
    path = tmp_path / "mix.csv"
    n = write_trace(path, wl.requests())
    trace = load_trace(path)
    assert n == len(trace.records) > 0
    assert list(trace.records) == list(wl.requests())
    assert trace.n_vfs == max(r.vf for r in trace.records) + 1
    for vf in range(trace.n_vfs):
        assert list(trace.stream(vf)) == list(wl.stream(vf))


def test_trace_syntax_variants():
    text = ["# a comment", "", "cycle,vf,op,addr,words", "0,1,read,0x20,2  # trailing",
            "5, 0, 3, 0, 1", "5,2,WRITE,30,1"]
    trace = parse_trace(text, "t.csv", n_vfs=4)
    assert trace.records == (Request(0, 1, Op.READ, 0x20, 2, 0), Request(5, 0, Op.NOTIFY, 0, 1),
                             Request(5, 2, Op.WRITE, 30, 1))
    assert trace.n_vfs == 4


@pytest.mark.parametrize("line, message", [
    ("10,0,WRTE,8,1", r"op 'WRTE' is not one of READ/WRITE/ADD/NOTIFY"),
    ("10,0,READ,8", r"expected 5 or 6 fields"),
    ("x,0,READ,8,1", r"cycle 'x' is not an integer"),
    ("5,0,READ,8,1", r"cycle 5 is before the previous record's cycle 7"),
    ("10,9,READ,8,1", r"vf 9 is outside 0\.\.3"),
    ("10,0,READ,280,4", r"addr 280 \+ words 4 is outside the 281-word image"),
    ("10,0,READ,8,0", r"words 0 must be >= 1"),
    ("10,0,NOTIFY,0,2", r"a NOTIFY has words 1, not 2"),
    ("10,0,NOTIFY,0,1,9", r"NOTIFY vector \(data\) 9 is outside 0\.\.3"),
    ("10,0,WRITE,8,1,0x100000000", r"data 4294967296 is not a 32-bit value"),
])
def test_bad_trace_line_names_file_and_line(tmp_path, line, message):
    path = tmp_path / "bad.csv"
    path.write_text("cycle,vf,op,addr,words,data\n7,0,READ,8,1,0\n# fine so far\n" + line + "\n")
    with pytest.raises(TraceError, match=f"^{path}:4: {message}"):
        load_trace(path, n_vfs=4)


def test_bad_trace_file_errors(tmp_path):
    with pytest.raises(TraceError, match=r"nope.csv: cannot read the trace"):
        load_trace(tmp_path / "nope.csv")
    empty = tmp_path / "empty.csv"
    empty.write_text("cycle,vf,op,addr,words\n# nothing\n")
    with pytest.raises(TraceError, match=r"empty.csv: the trace holds no requests"):
        load_trace(empty)
    header = tmp_path / "header.csv"
    header.write_text("cycle,vf,addr\n")
    with pytest.raises(TraceError, match=r"header.csv:1: header must be"):
        load_trace(header)


def test_trace_workload_checks_vfs():
    with pytest.raises(ValueError, match=r"request of VF 3 but n_vfs is 2"):
        TraceWorkload((Request(0, 3, Op.READ, 0),), 2)
