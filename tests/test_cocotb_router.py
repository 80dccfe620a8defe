"""pytest entry of the router's cocotb/pyuvm bench (tb/router): every configuration on every
installed simulator. ``ROUTER_SEED`` picks the seed (logged by every cocotb test)."""

from __future__ import annotations

import os
from dataclasses import asdict

import pytest

from tb.common.runner import run_tests, simulator_available
from tb.router import CONFIGS

SEED = int(os.environ.get("REGRESS_SEED") or os.environ.get("ROUTER_SEED", "20240613"))


@pytest.mark.parametrize("config", sorted(CONFIGS))
@pytest.mark.parametrize("sim", ["verilator", "icarus"])
def test_router(sim: str, config: str) -> None:
    if not simulator_available(sim):
        pytest.skip(f"{sim} is not installed")
    cfg = CONFIGS[config]
    run_tests(sim, f"router_{config}", cfg.build, "tb.router.test_router",
              parameters=asdict(cfg), extra_env=cfg.to_env(), seed=SEED)
