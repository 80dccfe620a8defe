"""pytest entry: the cocotb tests of tb/migproto (codec harness) on Verilator and Icarus."""

from __future__ import annotations

import os

import pytest

from tb.common.runner import run_tests, simulator_available
from tb.migproto import HARNESS_PARAMETERS, build_harness

SEED = int(os.environ.get("REGRESS_SEED") or 20240604)  # make regress sets it


@pytest.mark.parametrize("sim", ["verilator", "icarus"])
def test_cocotb_migproto(sim):
    if not simulator_available(sim):
        pytest.skip(f"{sim} is not installed")
    print(f"cocotb migproto tests on {sim}, COCOTB_RANDOM_SEED={SEED}")
    run_tests(sim, "migproto_harness", build_harness, "tb.migproto.test_migproto",
              parameters=HARNESS_PARAMETERS, seed=SEED)
