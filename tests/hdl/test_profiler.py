# amaranth: UnusedElaboratable=no
"""hdl/profiler.py in amaranth.sim: parameter checks, the register list against the model,
directed snapshot-cycle, tag-reuse, saturation and wrap cases with hand-computed values,
and random traffic scored against the reference of tb/profiler (whole requests, not
counters), whose reads must also make valid model snapshots."""

from __future__ import annotations

import dataclasses
import random

import pytest
from amaranth.hdl import Fragment, Value

from hdl.profiler import (
    PROFILER_DEVICE_REGS,
    PROFILER_VF_REGS,
    Profiler,
    vf_register_names,
)
from model.config import MAX_PROFILER_BINS, Device, SystemConfig
from model.profiler import DEFAULT_BINS, CounterSnapshot, DeviceSnapshot
from model.profiler import Profiler as Analyser
from model.regmap import PROFILER_ROW_STRIDE
from tb.profiler import (
    CONFIGS,
    Cycle,
    Plan,
    ProfilerParams,
    compare,
    counter_snapshot,
    device_snapshot,
    random_traffic,
    read_back,
    reference_windows,
    schedule_reads,
)
from tests.checks import assert_refused
from tests.hdl.simutil import run_sim


def simulate(p: ProfilerParams, plan: Plan) -> list[int]:
    """Drive ``plan`` cycle by cycle; element k is ``rd_data`` answering cycle k's read."""
    dut = p.build()
    ports = {"__".join(map(str, path)): Value.cast(value)
             for path, _, value in dut.signature.flatten(dut)}
    rd_data: list[int] = []

    async def bench(ctx):
        for cycle in plan.cycles:
            for name, value in cycle.ports(p).items():
                ctx.set(ports[name], value)
            await ctx.tick()
            rd_data.append(ctx.get(dut.rd_data))

    run_sim(dut, bench)
    return rd_data


def windows_read(p: ProfilerParams, cycles: list[Cycle]):
    plan = schedule_reads(p, cycles)
    return read_back(p, plan, simulate(p, plan))


def idle(n: int) -> list[Cycle]:
    return [Cycle() for _ in range(n)]


# ---------------------------------------------------------------- parameters, registers
@pytest.mark.parametrize(("args", "kwargs", "error", "message"), [
    ((0,), {}, ValueError, "Profiler n_vfs must be between 1 and 255, not 0"),
    ((256,), {}, ValueError, "Profiler n_vfs must be between 1 and 255, not 256"),
    (("4",), {}, TypeError, "Profiler n_vfs must be an integer, not '4'"),
    ((4,), {"tag_bits": 17}, ValueError, "Profiler tag_bits must be between 1 and 16, not 17"),
    ((4,), {"tag_bits": True}, TypeError, "Profiler tag_bits must be an integer, not True"),
    ((4,), {"counter_bits": 64}, ValueError,
     "Profiler counter_bits must be between 8 and 32, not 64"),
    ((4,), {"latency_bits": 33}, ValueError,
     "Profiler latency_bits must be between 2 and 32, not 33"),
    ((4,), {"counter_bits": 16, "latency_bits": 20}, ValueError,
     "Profiler latency_bits must be between 2 and 16, not 20"),
    ((4,), {"latency_bits": 8}, ValueError, "Profiler n_bins must be between 2 and 9, not 16"),
    ((4,), {"n_bins": 1}, ValueError, "Profiler n_bins must be between 2 and 25, not 1"),
    ((4,), {"words_bits": 0}, ValueError, "Profiler words_bits must be between 1 and 16, not 0"),
    ((4,), {"counter_bits": 8, "latency_bits": 4, "n_bins": 4, "words_bits": 7}, ValueError,
     "Profiler words_bits must be between 1 and 6, not 7"),
    ((4,), {"link_word_bits": 9}, ValueError,
     "Profiler link_word_bits must be between 1 and 8, not 9"),
])
def test_parameter_errors(args, kwargs, error, message):
    assert_refused(error, message, Profiler, *args, **kwargs)


def test_register_lists_follow_the_model():
    hist = tuple(f"histogram[{b}]" for b in range(DEFAULT_BINS))
    assert PROFILER_VF_REGS == ("device", "requests", "bytes", "latency_sum", "latency_max",
                                *hist, "occupancy", "occupancy_max")
    assert vf_register_names(4)[5:9] == tuple(f"histogram[{b}]" for b in range(4))
    assert PROFILER_DEVICE_REGS == ("window", "busy[0]", "busy[1]", "link_words[0]",
                                    "link_words[1]", "slots_used[0]", "slots_used[1]")
    # Every model field but the row address and the configuration has a register.
    model_vf = {f.name for f in dataclasses.fields(CounterSnapshot)} - {"vf"}
    assert model_vf == {name.split("[")[0] for name in PROFILER_VF_REGS} - {"occupancy_max"}
    model_dev = {f.name for f in dataclasses.fields(DeviceSnapshot)}
    assert model_dev - {"slots", "link_words_per_cycle"} == {
        name.split("[")[0] for name in PROFILER_DEVICE_REGS}


def test_the_widest_histogram_the_config_allows_fills_a_window_row():
    assert len(vf_register_names(MAX_PROFILER_BINS)) == PROFILER_ROW_STRIDE // 4


def test_for_system_takes_the_config_sizes():
    config = SystemConfig(tag_bits=4, link_width=128, profiler_bins=6, profiler_counter_bits=16,
                          profiler_latency_bits=12, profiler_words_bits=1)
    prof = Profiler.for_system(config)
    assert (prof.n_vfs, prof.tag_bits, prof.n_bins, prof.counter_bits, prof.latency_bits,
            prof.words_bits) == (8, 4, 6, 16, 12, 1)
    assert prof.link_word_bits == 3            # up to 4 words a flit at 128 bits
    default = Profiler.for_system(SystemConfig())
    assert (default.n_bins, default.counter_bits, default.latency_bits, default.words_bits,
            default.link_word_bits) == (DEFAULT_BINS, 32, 24, 8, 2)


def test_ports():
    dut = Profiler(5, tag_bits=4, words_bits=3, link_word_bits=2)
    Fragment.get(dut, None)  # it elaborates
    widths = {"__".join(map(str, path)): (flow.flow.value, len(Value.cast(value)))
              for path, flow, value in dut.signature.flatten(dut)}
    assert widths == {
        "req_seen__valid": ("In", 1), "req_seen__vf": ("In", 3),
        "req_seen__tag": ("In", 4), "req_seen__words": ("In", 3),
        "resp_seen__valid": ("In", 1), "resp_seen__vf": ("In", 3),
        "resp_seen__tag": ("In", 4), "busy": ("In", 2), "link_words": ("In", 4),
        "vf_device": ("In", 5), "slots_used": ("In", 16), "snapshot": ("In", 1),
        "rd_en": ("In", 1), "rd_vf": ("In", 3), "rd_index": ("In", 5),
        "rd_data": ("Out", 32),
    }


# ---------------------------------------------------------------- directed cases
P = ProfilerParams(n_vfs=2, tag_bits=2, latency_bits=16, n_bins=8)


def test_snapshot_cycle_events_count_in_the_new_window():
    cycles = idle(200)
    cycles[5].req = (0, 1, 2)      # answered in the snapshot cycle: latency 5
    cycles[9].req = (0, 2, 1)      # answered after it: latency 3
    cycles[10].resp = (0, 1)
    cycles[12].resp = (0, 2)
    cycles[100].req = (1, 0, 3)    # issued in the second snapshot's cycle
    cycles[101].resp = (1, 0)
    for c in (9, 10, 100):
        cycles[c].busy, cycles[c].link = (1, 0), (0, 2)
    cycles[10].snapshot = cycles[100].snapshot = cycles[199].snapshot = True
    cycles[10].vf_device, cycles[10].slots_used = 0b10, (7, 3)
    first, second, third = windows_read(P, cycles)

    # [0, 10): nothing completed; request 1 open in 5..9, request 2 in 9.
    v0 = first.vfs[0]
    assert (v0["requests"], v0["latency_sum"], v0["occupancy"], v0["occupancy_max"]) == (
        0, 0, 6, 2)
    assert v0["device"] == 0
    assert first.vfs[1]["device"] == 1
    assert first.device == {"window": 10, "busy[0]": 1, "busy[1]": 0, "link_words[0]": 0,
                            "link_words[1]": 2, "slots_used[0]": 7, "slots_used[1]": 3}
    # [10, 100): both responses; request 2 still open in 10 and 11.
    v0 = second.vfs[0]
    assert (v0["requests"], v0["bytes"], v0["latency_sum"], v0["latency_max"]) == (2, 12, 8, 5)
    assert (v0["histogram[2]"], v0["histogram[3]"], v0["occupancy"]) == (1, 1, 2)
    assert second.vfs[1]["requests"] == 0 and second.vfs[1]["occupancy"] == 0
    assert (second.device["window"], second.device["busy[0]"]) == (90, 1)
    # [100, 199): VF 1's request, issued in the pulse's cycle, open one cycle.
    v1 = third.vfs[1]
    assert (v1["requests"], v1["latency_sum"], v1["occupancy"], v1["bytes"]) == (1, 1, 1, 12)
    assert (third.device["window"], third.device["busy[0]"]) == (99, 1)


def test_back_to_back_snapshots_make_a_one_cycle_window():
    cycles = idle(120)
    cycles[3].req = (1, 3, 1)
    cycles[20].busy = (1, 1)
    cycles[19].snapshot = cycles[20].snapshot = True
    cycles[21].resp = (1, 3)
    plan = schedule_reads(P, cycles)
    assert plan.checked == [20]  # the window closed in cycle 19 is overwritten unread
    (window,) = read_back(P, plan, simulate(P, plan))
    assert window.device["window"] == 1
    assert window.device["busy[0]"] == window.device["busy[1]"] == 0  # cycle 20 is next
    assert window.vfs[1]["occupancy"] == 1 and window.vfs[1]["requests"] == 0


def test_tag_reused_in_its_response_cycle():
    cycles = idle(120)
    cycles[3].req = (0, 1, 1)
    cycles[8].resp, cycles[8].req = (0, 1), (0, 1, 2)  # answer and reuse tag 1 at once
    cycles[10].resp = (0, 1)
    cycles[11].snapshot, cycles[11].slots_used = True, (5, 9)
    plan = schedule_reads(P, cycles)
    rd_data = simulate(P, plan)
    (window,) = read_back(P, plan, rd_data)
    v0 = window.vfs[0]
    assert (v0["requests"], v0["latency_sum"], v0["latency_max"], v0["bytes"]) == (2, 7, 5, 12)
    # Without rd_en, rd_data holds the last read (the device row's last register).
    last = max(k for k, c in enumerate(plan.cycles) if c.read is not None)
    assert rd_data[last:] == [9] * (len(rd_data) - last) and last < len(rd_data) - 10
    assert (v0["occupancy"], v0["occupancy_max"]) == (7, 1)


def test_events_of_unknown_vfs_are_ignored():
    p = ProfilerParams(n_vfs=3, tag_bits=2, latency_bits=16, n_bins=8)
    cycles = idle(150)
    cycles[2].req = (3, 0, 1)
    cycles[4].resp = (3, 0)
    cycles[5].req = (2, 0, 1)
    cycles[7].resp = (2, 0)
    cycles[9].snapshot = True
    (window,) = windows_read(p, cycles)
    assert [v["requests"] for v in window.vfs] == [0, 0, 1]
    assert [v["occupancy"] for v in window.vfs] == [0, 0, 2]


def test_counters_saturate_instead_of_wrapping():
    p = ProfilerParams(n_vfs=1, tag_bits=2, latency_bits=8, n_bins=9, counter_bits=8,
                       words_bits=6, link_word_bits=2)
    cycles = idle(400)
    for c in range(300):
        cycles[c].busy, cycles[c].link = (1, 0), (3, 0)
    for tag in range(4):  # four requests open for ~200 cycles: occupancy ~800
        cycles[tag].req = (0, tag, 63)
        cycles[200 + tag].resp = (0, tag)
    cycles[300].snapshot = True
    (window,) = windows_read(p, cycles)
    v0 = window.vfs[0]
    assert window.device["window"] == window.device["busy[0]"] == 255
    assert window.device["link_words[0]"] == 255 and window.device["busy[1]"] == 0
    assert (v0["occupancy"], v0["latency_sum"], v0["bytes"]) == (255, 255, 255)
    assert (v0["requests"], v0["latency_max"], v0["occupancy_max"]) == (4, 200, 4)
    assert v0["histogram[8]"] == 4


def test_one_cycle_can_saturate_a_counter():
    """More outstanding requests than a counter holds: one cycle's increment overflows."""
    p = ProfilerParams(n_vfs=1, tag_bits=9, latency_bits=8, n_bins=9, counter_bits=8)
    cycles = idle(420)
    for tag in range(300):
        cycles[tag].req = (0, tag, 1)
    cycles[300].snapshot = True
    (window,) = windows_read(p, cycles)
    assert (window.vfs[0]["occupancy"], window.vfs[0]["occupancy_max"]) == (255, 300)


def test_latency_wraps_modulo_two_to_the_latency_bits():
    p = ProfilerParams(n_vfs=1, tag_bits=2, latency_bits=4, n_bins=5)
    cycles = idle(120)
    cycles[0].req, cycles[20].resp = (0, 0, 1), (0, 0)   # 20 cycles: 20 mod 16 = 4
    cycles[1].req, cycles[17].resp = (0, 1, 1), (0, 1)   # 16 cycles: 0
    cycles[30].snapshot = True
    (window,) = windows_read(p, cycles)
    v0 = window.vfs[0]
    assert (v0["latency_sum"], v0["latency_max"]) == (4, 4)
    assert [v0[f"histogram[{b}]"] for b in range(5)] == [1, 0, 0, 1, 0]
    assert v0["occupancy"] == 36  # occupancy does not wrap: it counts cycles


# ---------------------------------------------------------------- random traffic
@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_random_traffic_matches_the_reference(config, seed):
    p = CONFIGS[config]
    rng = random.Random(seed)
    extra = (0, 120) if config == "odd" else (150, 300)  # narrow: windows saturate
    plan = random_traffic(p, rng, n_windows=5, extra_cycles=extra)
    print(f"profiler random traffic: config={config} seed={seed} cycles={len(plan.cycles)}")
    rd_data = simulate(p, plan)
    errors = compare(p, plan, rd_data)
    assert not errors, "\n".join(errors[:20])
    assert len(plan.checked) == 6
    if config == "narrow":
        assert any(w.device["window"] == p.limit for w in reference_windows(p, plan.cycles))
        return
    # The reads make valid model snapshots, which the VMM-side profiler analyses.
    for window in read_back(p, plan, rd_data):
        snaps = [counter_snapshot(vf, regs) for vf, regs in enumerate(window.vfs)]
        dev = device_snapshot(window.device, slots=(8, 4), link_words_per_cycle=2)
        report = Analyser().analyse(snaps, dev, end=window.end)
        assert report.contention.window == window.device["window"]
        assert sum(w.requests for w in report.workloads) == sum(s.requests for s in snaps)
        assert all(s.device in Device for s in snaps)


def test_the_check_can_fail():
    """The same reads scored against traffic one cycle off at a window edge must fail."""
    p = CONFIGS["odd"]
    cycles = idle(200)
    cycles[3].req, cycles[10].resp = (0, 0, 1), (0, 0)
    cycles[10].snapshot = cycles[120].snapshot = True
    plan = schedule_reads(p, cycles)
    rd_data = simulate(p, plan)
    assert not compare(p, plan, rd_data)
    early = Plan([dataclasses.replace(c) for c in plan.cycles], plan.checked, plan.zero_reads)
    early.cycles[9].resp, early.cycles[10].resp = (0, 0), None
    errors = compare(p, early, rd_data)
    assert "snapshot @10 VF 0 requests: read 0, expected 1" in errors
    assert "snapshot @120 VF 0 requests: read 1, expected 0" in errors
