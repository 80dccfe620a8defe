"""pytest entry: the cocotb/pyuvm bench of the AXI4-Lite slave (tb/csr) on Verilator and
Icarus. ``CSR_SEED`` picks the seed (logged by every cocotb test)."""

from __future__ import annotations

import os

import pytest

from hdl.csr import AxiLiteSlave
from tb.common.runner import run_tests, simulator_available

SEED = int(os.environ.get("REGRESS_SEED") or os.environ.get("CSR_SEED", "20240705"))
N_VFS = 3


@pytest.mark.parametrize("sim", ["verilator", "icarus"])
def test_cocotb_csr(sim: str) -> None:
    if not simulator_available(sim):
        pytest.skip(f"{sim} is not installed")
    pytest.importorskip("cocotbext.axi", reason="the AXI4-Lite agent needs cocotbext-axi "
                                                "(pip install cocotbext-axi==0.1.28)")
    print(f"cocotb csr tests on {sim}, COCOTB_RANDOM_SEED={SEED}, n_vfs={N_VFS}")
    run_tests(sim, "csr", AxiLiteSlave, "tb.csr.test_csr", parameters={"addr_bits": 15},
              extra_env={"CSR_N_VFS": str(N_VFS)}, seed=SEED)
