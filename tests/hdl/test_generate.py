"""`make verilog` writes Verilog and a sidecar for every block (hdl.generate)."""

import json

from hdl.generate import BLOCKS, generate
from model.config import SystemConfig
from model.state import ImageLayout


def test_every_block_converts_with_its_sidecar(tmp_path):
    config = SystemConfig(n_vfs=2, host_slots=2, offload_slots=1,
                          layout=ImageLayout(csr_words=4, msix_vectors=2, mem_words=32,
                                             block_words=8), chunk_words=16)
    written = generate(tmp_path, config=config)
    assert sorted(p.stem for p in written) == sorted(b.name for b in BLOCKS)
    for path in written:
        assert f"module {path.stem}(" in path.read_text()
        sidecar = json.loads(path.with_suffix(".json").read_text())
        assert sidecar["top"] == path.stem and sidecar["clock"] == "clk"
        assert sidecar["ports"], f"{path.stem} has no ports in its sidecar"
