"""pytest setup: the repo root on sys.path, and ``--sim`` to restrict the cocotb benches."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SIMULATORS = ("verilator", "icarus")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--sim", choices=SIMULATORS, default=None,
                     help="run the cocotb benches on this simulator only (default: every "
                          "installed one); `make test SIM=...` passes it")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect tests parametrized with ``sim`` set to another simulator than ``--sim``."""
    wanted = config.getoption("--sim")
    if wanted is None:
        return
    keep, drop = [], []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        sim = params.get("sim", params.get("simulator"))
        (drop if sim in SIMULATORS and sim != wanted else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config._vfmig_started = time.time()


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    """With WAVES=1: the FST each cocotb run of this session wrote (tb/common/runner.py)."""
    from tb.common.runner import BUILD, WAVES_FILE, waves_wanted

    if not waves_wanted():
        return
    started = getattr(config, "_vfmig_started", 0)
    written = sorted(p for p in (BUILD / "sim_build").glob(f"*/runs/*/{WAVES_FILE}")
                     if p.stat().st_mtime >= started)
    terminalreporter.write_sep("-", f"waves (WAVES=1): {len(written)} FST files")
    for path in written:
        terminalreporter.write_line(f"waves: {path}")
