"""pytest entry: the cocotb tests of tb/dma on Verilator and Icarus."""

from __future__ import annotations

import os

import pytest

from tb.common.runner import run_tests, simulator_available
from tb.dma.harness import HARNESS_PARAMETERS, dma_harness

SEED = int(os.environ.get("REGRESS_SEED") or 20240601)  # make regress sets it


@pytest.mark.parametrize("sim", ["verilator", "icarus"])
def test_cocotb_dma(sim):
    if not simulator_available(sim):
        pytest.skip(f"{sim} is not installed")
    print(f"cocotb dma tests on {sim}, COCOTB_RANDOM_SEED={SEED}")
    run_tests(sim, "dma_harness", dma_harness, "tb.dma.test_dma",
              parameters=HARNESS_PARAMETERS, seed=SEED)
