"""The regression machinery (tb/regress): testplans consistent with the tests and the
covergroups the code samples, seeds, bad input, results files, and a tiny suite on a
two-worker dask.distributed LocalCluster (loopback only) giving the same results as local
workers."""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tb.common.coverage import covergroup, cross, merge
from tb.common.runner import PLANT_ENV, SIMULATORS, planted_fault, simulator_available
from tb.regress import run
from tb.regress.__main__ import main, simulators
from tb.regress.docs import markdown
from tb.regress.testplan import ROOT, load_all, problems

TINY_PLAN = json.dumps({
    "name": "tiny",
    "tests": {"good": {"node": "tests/hdl/test_crc32.py::test_known_value", "randomised": True},
              "bad": {"node": "tests/tb/regress_samples.py::test_fails_on_odd_seed",
                      "randomised": True}},
    "testpoints": [{"name": "tp", "goal": "g", "stimulus": "s", "checks": "c",
                    "tests": ["good", "bad"]}],
    "covergroups": []})


def test_the_testplans_name_existing_tests_and_sampled_bins():
    assert problems(load_all()) == []


def test_docs_testplan_md_is_current():
    text = (ROOT / "docs" / "testplan.md").read_text()
    assert text == markdown(load_all()), "docs/testplan.md is stale: run `make docs`"


def test_a_missing_test_or_an_unsampled_bin_is_named(tmp_path):
    (tmp_path / "x.hjson").write_text(json.dumps({
        "name": "x", "tests": {"t": {"node": "tests/nope.py::test_a"}},
        "testpoints": [{"name": "p", "goal": "g", "stimulus": "s", "checks": "c",
                        "tests": ["t", "ghost"]}],
        "covergroups": [{"name": "link", "bins": ["replay", "teleport"]},
                        {"name": "nobody", "bins": ["a"]}]}))
    assert problems(load_all(tmp_path)) == [
        "x.hjson: test 't' runs tests/nope.py::test_a, which does not exist",
        "x.hjson: testpoint 'p' names unknown test 'ghost'",
        "x.hjson: bin 'teleport' of link is sampled by no code",
        "x.hjson: covergroup 'nobody' is sampled by no code"]


def test_covergroup_refuses_an_unplanned_bin_and_flush_writes_hits(tmp_path, monkeypatch):
    group = covergroup("selftest.g", cross(["a", "b"], ["1"]))
    group.sample("a x 1", 2)
    with pytest.raises(ValueError, match="has no bin 'c'; bins: a x 1, b x 1"):
        group.sample("c")
    monkeypatch.setenv("VFMIG_COVERAGE_DIR", str(tmp_path))
    from tb.common.coverage import flush
    assert merge([flush(), flush()])["selftest.g"] == {"a x 1": 4, "b x 1": 0}


def test_seeds_derive_from_the_master_seed_only():
    assert run.derive_seed(5, "link", 0) == run.derive_seed(5, "link", 0)
    assert len({run.derive_seed(5, "link", i) for i in range(50)}) == 50
    assert run.derive_seed(5, "link", 0) != run.derive_seed(6, "link", 0)


def test_a_smoke_job_clearing_the_seed_does_not_beat_the_scenario_knobs(monkeypatch):
    """A smoke job clears VFMIG_SEED, and cocotb's runner copied the caller's environment
    over the knobs it was given: every system scenario of the smoke suite once failed
    reading VFMIG_SEED='' (int('')).  The runner now sets the knobs in the environment for
    the run, and an empty knob reads as unset."""
    from tb.common.runner import environ_set
    from tb.system.env import Knobs
    for key, value in run.Job("t", "n", None, 0, "verilator", 60).env().items():
        monkeypatch.setenv(key, value)
    with environ_set(Knobs(seed=9, plan="0:pre").to_env()):
        knobs = Knobs.from_env()
    assert (knobs.seed, knobs.plan) == (9, "0:pre")
    assert os.environ["VFMIG_SEED"] == ""                  # restored afterwards
    assert Knobs.from_env({"VFMIG_SEED": ""}).seed == Knobs().seed


def test_a_nightly_only_test_stays_out_of_smoke_and_runs_nightly():
    from tb.regress.testplan import Test
    quick = Test("quick", "a.py::t", randomised=True, timeout=60, plan="p")
    long = Test("long", "a.py::u", randomised=False, timeout=60, plan="p", nightly_only=True)
    smoke = run.make_jobs([quick, long], ["verilator"], seeds=3, master=None)
    nightly = run.make_jobs([quick, long], ["verilator"], seeds=3, master=7)
    assert [j.test for j in smoke] == ["quick"]
    assert [j.test for j in nightly] == ["quick"] * 3 + ["long"]


@pytest.mark.parametrize("argv, line", [
    (["--suite", "weekly"], "error: unknown SUITE='weekly': suites are smoke, nightly"),
    (["--tests", "nothing*"], "error: TESTS='nothing*' matches no test; tests: csr,"),
    (["--scheduler", "localhost"], "error: SCHEDULER='localhost' is not a Dask scheduler"),
    (["--plant", "melt"], "error: unknown PLANT='melt': the deliberate faults are "
                          "double_replay, forget_pba"),
])
def test_bad_input_is_one_clear_line(argv, line, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(line), err


def test_smoke_runs_on_verilator_nightly_on_both_unless_sim_is_given():
    if not all(simulator_available(s) for s in SIMULATORS):
        pytest.skip("needs both simulators installed")
    assert simulators("smoke", "") == ("verilator",)
    assert simulators("nightly", "") == SIMULATORS
    assert simulators("nightly", "icarus") == ("icarus",)


def test_a_planted_fault_is_read_and_checked(monkeypatch):
    monkeypatch.setenv(PLANT_ENV, "double_replay")
    assert planted_fault(("double_replay", "forget_pba")) == "double_replay"
    monkeypatch.setenv(PLANT_ENV, "melt")
    with pytest.raises(ValueError, match="VFMIG_PLANT='melt' is no deliberate fault of this "
                                         "bench: choose one of double_replay, forget_pba"):
        planted_fault(("double_replay", "forget_pba"))
    monkeypatch.setenv(PLANT_ENV, "")
    assert planted_fault(("double_replay",)) is None


def _tiny(tmp_path: Path, *extra: str) -> tuple[int, dict, list[dict], Path]:
    plans, out = tmp_path / "plans", tmp_path / "out"
    plans.mkdir(parents=True, exist_ok=True)
    (plans / "tiny.hjson").write_text(TINY_PLAN)
    rc = main(["--suite", "nightly", "--seeds", "3", "--master-seed", "11", "--plans",
               str(plans), "--out", str(out), "--jobs", "2", "--sim", "verilator", *extra])
    summary = json.loads((out / "summary.json").read_text())
    return rc, summary, json.loads((out / "results.json").read_text()), out


def _outcomes(results: list[dict]) -> dict:
    return {r["run_id"]: r["status"] for r in results}


def test_tiny_suite_on_local_workers_and_on_a_dask_localcluster(tmp_path):
    distributed = pytest.importorskip("distributed")
    rc, summary, local, out = _tiny(tmp_path / "local")
    seeds = [run.derive_seed(11, "bad", i) for i in range(3)]
    odd = sum(s % 2 for s in seeds)
    assert rc == 1 and summary["runs"] == 6 and summary["failed"] == odd
    assert summary["passed"] == 6 - odd and summary["master_seed"] == 11
    failed = next(r for r in local if r["status"] == "failed")
    assert failed["rerun"] == (f"VFMIG_SEED={failed['seed']} .venv/bin/python -m pytest -m '' "
                               f"tests/tb/regress_samples.py::test_fails_on_odd_seed "
                               f"--sim verilator")
    cases = ET.parse(out / "junit.xml").getroot().iter("testcase")
    assert sorted(c.get("name") for c in cases) == sorted(_outcomes(local))
    assert "<svg" in (out / "report.html").read_text()
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster:
        rc2, summary2, dask, _ = _tiny(tmp_path / "dask", "--scheduler",
                                       cluster.scheduler_address)
    assert rc2 == 1 and _outcomes(dask) == _outcomes(local)
    assert {k: summary2[k] for k in ("runs", "passed", "failed", "errors")} == {
        k: summary[k] for k in ("runs", "passed", "failed", "errors")}


def test_a_hang_is_an_error_with_its_log_and_the_others_go_on(tmp_path):
    job = run.Job("hang", "tests/tb/regress_samples.py::test_hangs", None, 0, "verilator", 3)
    result = run.run_job(job, str(tmp_path))
    assert result["status"] == "error" and result["message"].startswith("timeout")
    assert Path(result["log"]).is_file()
