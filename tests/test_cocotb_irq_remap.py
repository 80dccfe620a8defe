"""pytest entry: the cocotb/pyuvm tests of tb/irq_remap on Verilator and Icarus, and the
negative tests: a remapper with a deliberate bug must make the interrupt scoreboard fail."""

from __future__ import annotations

import json
import os

import pytest

from hdl.irq_remap import FAULT_INJECTIONS
from tb.common.runner import run_tests, simulator_available
from tb.irq_remap import BENCH_PARAMS, ENV_REPORT, build_remap, params_to_env

SEED = int(os.environ.get("REGRESS_SEED") or 20240603)  # make regress sets it
MODULE = "tb.irq_remap.test_irq_remap"


def _run(sim: str, tmp_path, fault_inject: str | None = None, testcase: str | None = None):
    name = "irq_remap" if fault_inject is None else f"irq_remap_{fault_inject}"
    env = {**params_to_env(BENCH_PARAMS), ENV_REPORT: str(tmp_path)}
    print(f"cocotb irq_remap tests on {sim} ({name}), COCOTB_RANDOM_SEED={SEED}")
    return run_tests(sim, name, lambda: build_remap(BENCH_PARAMS, fault_inject), MODULE,
                     parameters={**BENCH_PARAMS.to_dict(), "fault_inject": fault_inject},
                     testcase=testcase, extra_env=env, seed=SEED)


@pytest.mark.parametrize("sim", ["verilator", "icarus"])
def test_cocotb_irq_remap(sim, tmp_path):
    if not simulator_available(sim):
        pytest.skip(f"{sim} is not installed")
    # make regress PLANT=<fault> builds the remapper with that deliberate bug: this must fail
    _run(sim, tmp_path, os.environ.get("REGRESS_FAULT_INJECT") or None)
    for test in ("Storm", "StormBackpressure"):
        totals = json.loads((tmp_path / f"{test}.json").read_text())["totals"]
        assert totals["errors"] == 0 and totals["lost"] == 0 and totals["duplicated"] == 0
        assert totals["raised"] > 1000 and totals["spoof_blocked"] == totals["spoof_attempts"]


# What each deliberate bug must show up as in the scoreboard.
SYMPTOM = {"double_replay": "duplicated", "forget_pba": "lost"}


@pytest.mark.parametrize("fault_inject", FAULT_INJECTIONS)
@pytest.mark.parametrize("sim", ["verilator", "icarus"])
def test_cocotb_scoreboard_catches_broken_remapper(sim, fault_inject, tmp_path):
    if not simulator_available(sim):
        pytest.skip(f"{sim} is not installed")
    with pytest.raises(SystemExit):   # the runner's way of failing a cocotb test in pytest
        _run(sim, tmp_path, fault_inject, testcase="Storm")
    report = json.loads((tmp_path / "Storm.json").read_text())
    assert not report["failure"], report["failure"]   # failed by the scoreboard, not a crash
    assert report["totals"][SYMPTOM[fault_inject]] > 0, report["totals"]
