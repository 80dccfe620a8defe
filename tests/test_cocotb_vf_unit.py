"""pytest entry of the VF unit's cocotb bench (tb/vf_unit): every configuration on every
installed simulator. ``VF_UNIT_SEED`` picks the seed (logged by every cocotb test)."""

from __future__ import annotations

import os
from dataclasses import asdict

import pytest

from tb.common.runner import run_tests, simulator_available
from tb.vf_unit import CONFIGS

SEED = int(os.environ.get("REGRESS_SEED") or os.environ.get("VF_UNIT_SEED", "20240611"))


@pytest.mark.parametrize("config", sorted(CONFIGS))
@pytest.mark.parametrize("sim", ["verilator", "icarus"])
def test_vf_unit(sim: str, config: str) -> None:
    if not simulator_available(sim):
        pytest.skip(f"{sim} is not installed")
    cfg = CONFIGS[config]
    run_tests(sim, f"vf_unit_{config}", cfg.build, "tb.vf_unit.test_vf_unit",
              parameters=asdict(cfg), extra_env=cfg.to_env(), seed=SEED)
