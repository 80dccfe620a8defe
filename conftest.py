"""pytest setup: the repo root on sys.path, and ``--sim`` to restrict the cocotb benches."""

from __future__ import annotations

import sys
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
