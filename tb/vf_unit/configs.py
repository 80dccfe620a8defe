"""cocotb bench of hdl/vf_unit.py: the elaboration parameters shared by the pytest entry
(tb/vf_unit/test_vf_unit.py, which builds the Verilog) and the cocotb tests (which read them
back from the environment)."""

from __future__ import annotations

from dataclasses import dataclass

from model.state import ImageLayout
from tb.common.runner import BenchConfig


@dataclass(frozen=True)
class VFUnitConfig(BenchConfig):
    ENTRY = "tb/vf_unit/test_vf_unit.py"
    csr_words: int
    msix_vectors: int
    mem_words: int
    block_words: int
    n_slots: int
    service_latency: int
    tag_bits: int = 8

    @property
    def layout(self) -> ImageLayout:
        return ImageLayout(csr_words=self.csr_words, msix_vectors=self.msix_vectors,
                           mem_words=self.mem_words, block_words=self.block_words)

    def build(self):
        from hdl.vf_unit import VFUnit
        return VFUnit(self.layout, self.n_slots, self.service_latency, self.tag_bits)


# An offload device (fast, few slots, one PBA word) and a host device (slow, two PBA words).
CONFIGS = {
    "offload": VFUnitConfig(csr_words=4, msix_vectors=4, mem_words=96, block_words=8,
                            n_slots=3, service_latency=2),
    "host": VFUnitConfig(csr_words=8, msix_vectors=34, mem_words=40, block_words=16,
                         n_slots=2, service_latency=9, tag_bits=5),
}
