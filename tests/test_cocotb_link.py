"""pytest entry of the link's cocotb/pyuvm bench (tb/link): every configuration on every
installed simulator. ``LINK_SEED`` picks the seed (each cocotb test logs the seed it derives
from it); ``LINK_TESTCASE`` runs one cocotb test only (to reproduce a failure)."""

from __future__ import annotations

import os

import pytest

from tb.common.runner import run_tests, simulator_available
from tb.link import LINK_CONFIGS, config_env, link_pair

SEED = int(os.environ.get("REGRESS_SEED") or os.environ.get("LINK_SEED", "20240701"))


@pytest.mark.parametrize("config", sorted(LINK_CONFIGS))
@pytest.mark.parametrize("sim", ["verilator", "icarus"])
def test_link(sim: str, config: str) -> None:
    if not simulator_available(sim):
        pytest.skip(f"{sim} is not installed")
    print(f"cocotb link tests on {sim}, config {config}, COCOTB_RANDOM_SEED={SEED}")
    run_tests(sim, f"link_{config}", lambda: link_pair(config), "tb.link.test_link",
              parameters=LINK_CONFIGS[config], extra_env=config_env(config), seed=SEED,
              testcase=os.environ.get("LINK_TESTCASE") or None)
