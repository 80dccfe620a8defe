"""``DMAHarness``: the DMA with a memory behind it that has the VF unit's port semantics.

The memory answers ``sa_rd_en`` with ``sa_rd_data`` in the next cycle and takes every
``sa_wr_en`` write, as the VF unit's state-access port does, so the generated Verilog is a
closed design whose only ports are the DMA's six streams.
"""

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.memory import Memory

from hdl.dma import DMA
from model.state import ImageLayout
from tb.common.harness import connect_inner, inner_members

# The configuration the cocotb tests are written for (tb.dma.test_dma imports it):
# a 125-word image in a 128-word stride; 3 slots, so slot 3 is addressable but refused.
HARNESS_LAYOUT = ImageLayout(csr_words=8, msix_vectors=4, mem_words=100)
HARNESS_SLOTS = 3
HARNESS_MAX_CHUNK = 64
HARNESS_PARAMETERS = {"csr_words": 8, "msix_vectors": 4, "mem_words": 100,
                      "n_slots": HARNESS_SLOTS, "max_chunk_words": HARNESS_MAX_CHUNK}


# The DMA's streams, exposed on the harness under their own names.
STREAMS = {name: name for name in ("rd_desc", "rd_data", "rd_done", "wr_desc", "wr_data",
                                   "wr_done")}


class DMAHarness(wiring.Component):
    """``DMA(layout, n_slots, max_chunk_words)`` plus a state memory of
    ``2**len(sa_rd_addr)`` words (its initial contents are unspecified to the tests).

    Members
    -------
    rd_desc, rd_data, rd_done, wr_desc, wr_data, wr_done
        The DMA's streams, unchanged (see hdl/dma.py for latency and backpressure).
    """

    def __init__(self, layout: ImageLayout = HARNESS_LAYOUT, n_slots: int = HARNESS_SLOTS,
                 max_chunk_words: int = HARNESS_MAX_CHUNK):
        self.dma = DMA(layout, n_slots, max_chunk_words)
        super().__init__(inner_members(self.dma, STREAMS))

    def elaborate(self, platform):
        m = Module()
        dma = m.submodules.dma = self.dma
        connect_inner(m, self, dma, STREAMS)

        mem = m.submodules.state = Memory(shape=32, depth=1 << len(dma.sa_rd_addr), init=[])
        rd = mem.read_port()
        wr = mem.write_port()
        m.d.comb += [
            rd.en.eq(dma.sa_rd_en), rd.addr.eq(dma.sa_rd_addr), dma.sa_rd_data.eq(rd.data),
            wr.en.eq(dma.sa_wr_en), wr.addr.eq(dma.sa_wr_addr), wr.data.eq(dma.sa_wr_data),
        ]
        return m


def dma_harness() -> DMAHarness:
    """The harness in the configuration of ``HARNESS_PARAMETERS``."""
    return DMAHarness()


__all__ = ["DMAHarness", "dma_harness", "HARNESS_LAYOUT", "HARNESS_SLOTS",
           "HARNESS_MAX_CHUNK", "HARNESS_PARAMETERS"]
