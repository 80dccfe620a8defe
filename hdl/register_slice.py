"""A register slice on a stream: one registered stage that cuts the combinational path
from the sink's ``ready`` back to the source.

Where a block's acceptance depends on the payload it is offered (the VF unit's on the slot
and the memory word it reads), a source that chooses what to offer from the ``ready`` it
sees closes one long path through both blocks; on the 8-VF ECP5 build that path (the
router's dispatch into the host VF unit and back) set the clock. The slice is
``amaranth.lib.fifo.SyncFIFOBuffered`` of depth 1: ``i.ready`` is "the stage is empty",
a register, so nothing of the sink reaches the source in the same cycle.

Members
-------
i : In(stream of ``layout``)    from the source
o : Out(stream of ``layout``)   to the sink

Latency 1 cycle (``i`` handshake to ``o.valid``); throughput one beat every other cycle (the
stage takes a beat only once it is empty), enough for a sink that needs two cycles or more
per beat, such as the VF unit.
"""

# No ``from __future__ import annotations``: wiring.Component reads the member annotations.
from amaranth import Module
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

__all__ = ["RegisterSlice"]


class RegisterSlice(wiring.Component):
    def __init__(self, layout: data.Layout):
        if not isinstance(layout, data.Layout):
            raise TypeError(f"RegisterSlice layout must be an amaranth data.Layout, "
                            f"not {layout!r}")
        self.layout = layout
        super().__init__({"i": In(stream.Signature(layout)),
                          "o": Out(stream.Signature(layout))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.stage = stage = SyncFIFOBuffered(width=self.layout.size, depth=1)
        m.d.comb += [stage.w_data.eq(self.i.payload), stage.w_en.eq(self.i.valid),
                     self.i.ready.eq(stage.w_rdy),
                     self.o.payload.eq(stage.r_data), self.o.valid.eq(stage.r_rdy),
                     stage.r_en.eq(self.o.ready)]
        return m
