"""pytest entry of the migration-engine cocotb bench (tb/mig_engine) on the system top:
every capability-flag set (its own build) on Verilator and Icarus.  ``MIG_ENGINE_SEED``
picks the seed; each cocotb test logs the seed it derives from it."""

from __future__ import annotations

import os

import pytest

from tb.common.runner import run_tests, simulator_available
from tb.mig_engine import CONFIGS, build, to_env

SEED = int(os.environ.get("REGRESS_SEED") or os.environ.get("MIG_ENGINE_SEED", "20240612"))


@pytest.mark.parametrize("config", sorted(CONFIGS))
@pytest.mark.parametrize("sim", ["verilator", "icarus"])
def test_cocotb_mig_engine(sim: str, config: str) -> None:
    if not simulator_available(sim):
        pytest.skip(f"{sim} is not installed")
    cfg = CONFIGS[config]
    print(f"mig_engine bench, {config} on {sim}, COCOTB_RANDOM_SEED={SEED}")
    run_tests(sim, f"mig_system_{config}", lambda: build(cfg), "tb.mig_engine.test_mig_engine",
              parameters=cfg.to_dict(), extra_env=to_env(cfg), seed=SEED)
