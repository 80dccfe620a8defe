"""pytest entry of the TC_IO tunnel's cocotb bench (tb/io_tunnel): every configuration on
every installed simulator. ``IO_TUNNEL_SEED`` picks the seed (each cocotb test logs the seed
it derives from it); ``IO_TUNNEL_TESTCASE`` runs one cocotb test only."""

from __future__ import annotations

import os

import pytest

from tb.common.runner import run_tests, simulator_available
from tb.io_tunnel import TUNNEL_CONFIGS, config_env, tunnel_pair

SEED = int(os.environ.get("REGRESS_SEED") or os.environ.get("IO_TUNNEL_SEED", "20240801"))


@pytest.mark.parametrize("config", sorted(TUNNEL_CONFIGS))
@pytest.mark.parametrize("sim", ["verilator", "icarus"])
def test_io_tunnel(sim: str, config: str) -> None:
    if not simulator_available(sim):
        pytest.skip(f"{sim} is not installed")
    print(f"cocotb io_tunnel tests on {sim}, config {config}, COCOTB_RANDOM_SEED={SEED}")
    run_tests(sim, f"io_tunnel_{config}", lambda: tunnel_pair(config),
              "tb.io_tunnel.test_io_tunnel",
              parameters=TUNNEL_CONFIGS[config], extra_env=config_env(config), seed=SEED,
              testcase=os.environ.get("IO_TUNNEL_TESTCASE") or None)
