"""One device's migration engine with its VF unit and DMA, its peer left to the test.

``EngineHarness`` wires ``MigEngine(config, device)`` to a ``VFUnit`` and a ``DMA`` exactly
as ``hdl/system.py`` does for one device, and exposes the engine's protocol ports (``rx``,
``tx``), its control and readback ports and its counters.  A test plays the other device's
engine with ``model.protocol.Message`` words, so it can send what no real peer would:
malformed messages and messages in the wrong protocol state.
"""

# No ``from __future__ import annotations``: wiring.Component reads the member annotations.
from amaranth.hdl import Module
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hdl.dma import DMA
from hdl.formats import ChunkBeat, bits_for
from hdl.mig_engine import COUNTER_BITS, MigEngine
from hdl.vf_unit import VFUnit
from model.config import Device, SystemConfig
from model.protocol import Malformed


class EngineHarness(wiring.Component):
    """``MigEngine`` + ``VFUnit`` + ``DMA`` of ``device``; the engine's peer is the test.

    Members
    -------
    rx : In(stream of ChunkBeat)        messages to the engine (the peer's ``tx``)
    tx : Out(stream of ChunkBeat)       messages from the engine
    ctl_vf, ctl_state_we, ctl_state, ctl_commit : In   the engine's control port
    rd_vf : In; rd : Out                the engine's per-VF readback (``readback_layout``)
    walk_status : Out(stream)           how a walk ended (the test must take it: ready)
    malformed, malformed_counts : Out   the engine's dropped-message counters
    digest : Out(ArrayLayout(32, n_slots))  the VF unit's per-slot image digests
    """

    def __init__(self, config: SystemConfig, device: Device):
        self.config, self.device = config, Device(device)
        self._engine = MigEngine(config, device)
        vf_bits = bits_for(config.n_vfs)
        super().__init__({
            "rx": In(stream.Signature(ChunkBeat)),
            "tx": Out(stream.Signature(ChunkBeat)),
            "ctl_vf": In(vf_bits), "ctl_state_we": In(1), "ctl_state": In(3),
            "ctl_commit": In(1),
            "rd_vf": In(vf_bits), "rd": Out(self._engine.readback_layout),
            "walk_status": Out(stream.Signature(self._engine.status_layout)),
            "malformed": Out(COUNTER_BITS),
            "malformed_counts": Out(data.ArrayLayout(COUNTER_BITS, len(Malformed))),
            "digest": Out(data.ArrayLayout(32, config.slots(device))),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, lay = self.config, self.config.layout
        n_slots = cfg.slots(self.device)
        m.submodules.unit = unit = VFUnit(lay, n_slots, cfg.latency(self.device),
                                          tag_bits=cfg.tag_bits + bits_for(cfg.n_vfs))
        m.submodules.dma = dma = DMA(lay, n_slots, max_chunk_words=cfg.max_chunk_words)
        m.submodules.engine = engine = self._engine
        for port in ("sa_rd_en", "sa_rd_addr", "sa_wr_en", "sa_wr_addr", "sa_wr_data"):
            m.d.comb += getattr(unit, port).eq(getattr(dma, port))
        m.d.comb += dma.sa_rd_data.eq(unit.sa_rd_data)
        for port in ("rd_desc", "wr_data", "wr_desc"):
            wiring.connect(m, getattr(engine, port), getattr(dma, port))
        for port in ("rd_data", "rd_done", "wr_done"):
            wiring.connect(m, getattr(dma, port), getattr(engine, port))
        for port in ("quiesce", "irq_hold", "dirty_rd_en", "dirty_rd_slot", "dirty_rd_word",
                     "dirty_clear"):
            m.d.comb += getattr(unit, port).eq(getattr(engine, port))
        for port in ("idle", "dirty_rd_bits", "dirty_count", "digest"):
            m.d.comb += getattr(engine, port).eq(getattr(unit, port))
        # No VM traffic in this harness: the unit's request side stays idle.
        m.d.comb += [unit.req.valid.eq(0), unit.resp.ready.eq(1), unit.irq.ready.eq(1),
                     engine.ctl_status.ready.eq(1), engine.done.ready.eq(1)]

        wiring.connect(m, wiring.flipped(self.rx), engine.rx)
        wiring.connect(m, engine.tx, wiring.flipped(self.tx))
        wiring.connect(m, engine.walk_status, wiring.flipped(self.walk_status))
        for port in ("ctl_vf", "ctl_state_we", "ctl_state", "ctl_commit", "rd_vf"):
            m.d.comb += getattr(engine, port).eq(getattr(self, port))
        m.d.comb += [self.rd.eq(engine.rd), self.malformed.eq(engine.malformed),
                     self.malformed_counts.eq(engine.malformed_counts),
                     self.digest.eq(unit.digest)]
        return m
