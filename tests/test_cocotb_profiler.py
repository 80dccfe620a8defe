"""pytest entry of the profiler's cocotb bench (tb/profiler): every configuration on every
installed simulator. ``PROFILER_SEED`` picks the seed (logged by every cocotb test)."""

from __future__ import annotations

import dataclasses
import os

import pytest

from tb.common.runner import run_tests, simulator_available
from tb.profiler import CONFIGS

SEED = int(os.environ.get("REGRESS_SEED") or os.environ.get("PROFILER_SEED", "20240621"))


@pytest.mark.parametrize("config", sorted(CONFIGS))
@pytest.mark.parametrize("sim", ["verilator", "icarus"])
def test_cocotb_profiler(sim: str, config: str) -> None:
    if not simulator_available(sim):
        pytest.skip(f"{sim} is not installed")
    params = CONFIGS[config]
    print(f"cocotb profiler tests on {sim} ({config}), COCOTB_RANDOM_SEED={SEED}")
    run_tests(sim, f"profiler_{config}", params.build, "tb.profiler.test_profiler",
              parameters=dataclasses.asdict(params), extra_env=params.to_env(), seed=SEED)
