"""The pure-Python side of `make bench` (tb/bench/main.py, tb/bench/downtime.py): sizes, the
downtime.json document, the target check, and the command line's bad-input errors.
No simulator runs here; `make bench` itself measures the figures."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import tb.bench.main as bench
from model.state import ImageLayout
from tb.bench.downtime import (
    DEFAULT_SIZES,
    Knobs,
    bench_config,
    check_write_interval,
    downtime_document,
    format_table,
    make_point,
    parse_sizes,
    target_failures,
    validate_document,
)
from tb.common.runner import ROOT


def _runs(pre: int, stop: int, **extra) -> dict:
    """What the cocotb module writes for one size (figures chosen by the test)."""
    return {"precopy": {"downtime": pre, "rounds": 3, "words_sent": 20000,
                        "total_cycles": 23000, "writes": 230, "max_write_wait": pre - 1},
            "stopcopy": {"downtime": stop, "rounds": 0, "words_sent": 16409,
                         "total_cycles": 18000, "writes": 4, "max_write_wait": stop - 5},
            **extra}


# ---------------------------------------------------------------- parameters
def test_default_sizes_reach_the_issue_largest_image():
    assert DEFAULT_SIZES[0] == 256 and max(DEFAULT_SIZES) >= 16384


def test_parse_sizes_sorts_and_deduplicates():
    assert parse_sizes("4096, 256,1024,256") == [256, 1024, 4096]


@pytest.mark.parametrize("text, message", [
    ("256,abc", "--sizes: 'abc' is not an integer (give memory sizes in words, e.g. "
                "256,1024,4096,16384)"),
    ("0,256", "--sizes: 0 words is outside [1, 65536]"),
    ("70000", "--sizes: 70000 words is outside [1, 65536]"),
    (" , ", "--sizes: no size given (e.g. 256,1024,4096,16384)"),
])
def test_parse_sizes_rejects_bad_input(text, message):
    with pytest.raises(ValueError) as info:
        parse_sizes(text)
    assert str(info.value) == message


def test_write_interval_must_leave_room_between_writes():
    assert check_write_interval(20) == 20
    with pytest.raises(ValueError, match=r"^--write-interval must be an integer >= 2 "
                                         r"\(cycles between writes\), not 1$"):
        check_write_interval(1)


def test_bench_config_is_one_vf_one_slot_per_device():
    config = bench_config(16384)
    assert (config.n_vfs, config.host_slots, config.offload_slots) == (1, 1, 1)
    assert config.layout == ImageLayout(mem_words=16384)


def test_knobs_travel_through_the_environment():
    knobs = Knobs(config=bench_config(1024), out="/tmp/x.json", seed=7, write_interval=50,
                  warmup_cycles=123)
    assert Knobs.from_env(knobs.to_env()) == knobs


def test_knobs_without_the_bench_environment_say_how_to_run():
    with pytest.raises(ValueError, match=r"VFMIG_BENCH_CONFIG, VFMIG_BENCH_OUT not set: run "
                                         r"the bench with 'python -m tb.bench'"):
        Knobs.from_env({})


# ---------------------------------------------------------------- results
def test_make_point_keeps_the_figures_and_computes_the_ratio():
    point = make_point(16384, _runs(pre=200, stop=18000))
    assert point["mem_words"] == 16384
    assert (point["precopy_downtime"], point["stopcopy_downtime"]) == (200, 18000)
    assert point["ratio"] == 90.0
    assert point["precopy_rounds"] == 3 and point["stopcopy_total_cycles"] == 18000
    assert point["stopcopy_max_write_wait"] == 17995


def test_make_point_with_zero_precopy_downtime_has_no_finite_ratio():
    point = make_point(256, _runs(pre=0, stop=300))
    assert point["ratio"] is None
    json.dumps(point, allow_nan=False)  # still valid JSON


def test_make_point_reports_a_failed_run():
    runs = _runs(100, 1000)
    runs["stopcopy"] = {"error": "VmmTimeout: VF 0: timeout after 20000 cycles"}
    with pytest.raises(ValueError, match=r"^1024 words, stopcopy: VmmTimeout: VF 0: timeout"):
        make_point(1024, runs)


def test_make_point_reports_a_missing_mode_and_a_missing_figure():
    runs = _runs(100, 1000)
    del runs["precopy"]
    with pytest.raises(ValueError, match=r"^256 words: no precopy run in the results$"):
        make_point(256, runs)
    runs = _runs(100, 1000)
    runs["precopy"]["downtime"] = None
    with pytest.raises(ValueError, match=r"^256 words, precopy: downtime missing or not an "
                                         r"integer \(None\)$"):
        make_point(256, runs)


def test_downtime_document_has_the_issue_schema():
    points = [make_point(n, _runs(100 + n // 1000, 2 * n)) for n in (256, 1024, 16384)]
    doc = downtime_document(points, "verilator", 1, 100, 300)
    text = json.dumps(doc, allow_nan=False)
    back = json.loads(text)
    assert [p["mem_words"] for p in back["points"]] == [256, 1024, 16384]
    for p in back["points"]:
        assert {"mem_words", "precopy_downtime", "stopcopy_downtime"} <= set(p)
    assert back["write_interval"] == 100 and back["seed"] == 1


@pytest.mark.parametrize("doc, message", [
    ({}, "downtime.json: 'points' must be a non-empty list"),
    ({"points": []}, "downtime.json: 'points' must be a non-empty list"),
    ({"points": [{"mem_words": 256, "precopy_downtime": 1.5, "stopcopy_downtime": 3}]},
     "downtime.json: points[0].precopy_downtime must be a non-negative integer, not 1.5"),
    ({"points": [{"mem_words": 256, "precopy_downtime": 1}]},
     "downtime.json: points[0].stopcopy_downtime must be a non-negative integer, not None"),
    ({"points": [{"mem_words": 1024, "precopy_downtime": 1, "stopcopy_downtime": 2},
                 {"mem_words": 256, "precopy_downtime": 1, "stopcopy_downtime": 2}]},
     "downtime.json: mem_words must increase strictly, not [1024, 256]"),
])
def test_validate_document_rejects_a_bad_shape(doc, message):
    with pytest.raises(ValueError) as info:
        validate_document(doc)
    assert str(info.value) == message


# ---------------------------------------------------------------- targets
def test_targets_met():
    points = [make_point(256, _runs(90, 360)), make_point(16384, _runs(207, 18000))]
    assert target_failures(0.984, points) == []
    assert target_failures(None, points) == []  # DMA not measured (--only downtime)


def test_slow_dma_is_a_miss():
    assert target_failures(0.9, []) == [
        "DMA throughput 0.900 words/cycle is below the target 0.95"]


def test_ratio_is_checked_at_the_largest_image_only():
    # 4x at the small image does not matter; 4.8x at the largest does
    points = [make_point(256, _runs(90, 360)), make_point(16384, _runs(3780, 18009))]
    assert target_failures(1.0, points) == [
        "at 16384 words stop-copy downtime 18009 cycles is 4.8x the pre-copy downtime 3780 "
        "cycles; the target is >= 10x"]
    assert target_failures(1.0, points[:1] + [make_point(16384, _runs(1800, 18000))]) == []


def test_ratio_with_zero_precopy_downtime_is_met():
    assert target_failures(None, [make_point(16384, _runs(0, 18000))]) == []


def test_table_has_a_row_per_point():
    table = format_table([make_point(256, _runs(90, 360)), make_point(16384, _runs(207, 18000))])
    rows = [line for line in table.splitlines() if "|" in line][1:]
    assert len(rows) == 2
    assert rows[1].split() == ["16384", "16409", "|", "207", "3", "23000", "|", "18000",
                               "18000", "|", "87.0x"]


# ---------------------------------------------------------------- command line
def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tb.bench", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})


@pytest.mark.parametrize("args, message", [
    (("--sizes", "256,big"), "error: --sizes: 'big' is not an integer (give memory sizes in "
                             "words, e.g. 256,1024,4096,16384)"),
    (("--write-interval", "0"), "error: --write-interval must be an integer >= 2 (cycles "
                                "between writes), not 0"),
    (("--sim", "modelsim"), "error: unknown SIM='modelsim': choose one of verilator, icarus"),
])
def test_cli_bad_input_is_one_clear_line(args, message):
    result = _cli(*args)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [message]
    assert result.stdout == ""


# ---------------------------------------------------------------- the entry point, no simulator
class _FakeDmaBench:
    def __init__(self, value):
        self.value = value

    def measure_words_per_cycle(self, sim):
        if isinstance(self.value, Exception):
            raise self.value
        return self.value


def _fake_point(sim, mem_words, out_dir, seed, write_interval, warmup_cycles):
    pre = 90 if mem_words < 16384 else 3780  # misses the ratio at the largest image
    return make_point(mem_words, _runs(pre, mem_words + 100))


@pytest.fixture
def no_simulator(monkeypatch):
    monkeypatch.setattr(bench, "check_simulator", lambda sim: sim)
    monkeypatch.setattr(bench, "run_point", _fake_point)


def test_dma_figure_is_written_as_words_per_cycle(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tb.bench.dma", _FakeDmaBench(0.984))
    assert bench.measure_dma("verilator", tmp_path) == 0.984
    assert json.loads((tmp_path / "dma.json").read_text())["words_per_cycle"] == 0.984


def test_dma_bench_failure_is_reported(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tb.bench.dma",
                        _FakeDmaBench(RuntimeError("DMA throughput bench failed on icarus")))
    with pytest.raises(bench.BenchRunError, match="^DMA throughput bench failed on icarus$"):
        bench.measure_dma("icarus", tmp_path)
    assert not (tmp_path / "dma.json").exists()


def test_main_exits_1_with_the_reason_when_a_target_is_missed(tmp_path, monkeypatch, capsys,
                                                              no_simulator):
    monkeypatch.setitem(sys.modules, "tb.bench.dma", _FakeDmaBench(0.5))
    code = bench.main(["--sim", "verilator", "--sizes", "256,16384", "--out", str(tmp_path)])
    err = capsys.readouterr().err.splitlines()
    assert code == 1
    assert err == ["FAILED: DMA throughput 0.500 words/cycle is below the target 0.95",
                   "FAILED: at 16384 words stop-copy downtime 16484 cycles is 4.4x the pre-copy "
                   "downtime 3780 cycles; the target is >= 10x"]
    doc = json.loads((tmp_path / "downtime.json").read_text())
    assert [p["mem_words"] for p in doc["points"]] == [256, 16384]


def test_main_exits_0_when_every_target_is_met(tmp_path, monkeypatch, capsys, no_simulator):
    monkeypatch.setitem(sys.modules, "tb.bench.dma", _FakeDmaBench(0.99))
    code = bench.main(["--sim", "verilator", "--sizes", "256,1024", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0 and "PASSED" in out
    assert json.loads((tmp_path / "dma.json").read_text()) == {"words_per_cycle": 0.99,
                                                               "sim": "verilator"}


# ---------------------------------------------------------------- simspeed
def test_simspeed_targets_and_bad_arguments(capsys):
    from tb.bench.simspeed import TARGET_RAW, main, target_failures
    good = {"ratio": 0.6, "raw_cycles_per_s": TARGET_RAW + 1}
    assert target_failures(good) == []
    assert target_failures({"ratio": 0.19, "raw_cycles_per_s": 50_000}) == [
        "ratio 0.19 below 0.5", f"raw 50000 cycles/s below {TARGET_RAW}"]
    assert main(["--cycles", "10"]) == 2
    assert capsys.readouterr().err.strip() == "error: --cycles must be at least 1000, not 10"
