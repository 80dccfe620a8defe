"""Formal harness of the link's DLLP scheduler (``hdl/link/flow_control.py``,
``DllpScheduler``): which ACK, NAK or FC DLLP the receiver sends next.

Free: the receiver's requests (``ack_request``, ``nak_request``, ``commit``), ``expected``,
the buffers' ``advertised`` limits and ``dllp.ready``. The harness keeps what is owed: a
NAK from a NAK request that opens a gap (one per gap: until a ``commit`` closes it) until
a NAK is taken; an ACK from an ACK request until an ACK or NAK is taken (a NAK carries the
last good sequence number too). Asserted:

* an owed NAK is offered at once (highest priority), and no NAK is offered that is not
  owed (a gap is NAKed once);
* an owed ACK is offered while no NAK is, and no ACK is offered that is not owed;
* an ACK or NAK carries the last good sequence number (``expected - 1``), an FC DLLP its
  class's ``advertised`` limit; DLLPs have length 0.

Formal size: 32-bit flits, packets of 1 word; 12-bit sequence numbers. BMC only: the
scheduler's pending flags are tied to the harness only through ``dllp``, the gap flag not
at all, so k-induction does not close.
"""

from __future__ import annotations

from amaranth.hdl import Assert, Assume, Cover, Module, Mux, ResetSignal, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from hdl.link import DllpScheduler
from hdl.link.common import SeqPair, mod_seq
from model.link import SEQ_BITS, FrameKind, LinkParams, TrafficClass

from .core import FormalBlock

__all__ = ["BLOCK", "LinkDllpHarness", "PARAMS"]

PARAMS = LinkParams(link_width=32, replay_slots=2, max_payload_words=1)


class LinkDllpHarness(wiring.Component):
    """The scheduler with free requests; ports: its inputs and ``dllp.ready``."""

    def __init__(self, fault: str | None = None):
        self.dut = DllpScheduler(PARAMS, _fault_inject=fault)
        super().__init__({"expected": In(SEQ_BITS), "ack_request": In(1), "nak_request": In(1),
                          "commit": In(1), "advertised": In(SeqPair), "ready": In(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = self.dut
        m.d.comb += [dut.expected.eq(self.expected), dut.ack_request.eq(self.ack_request),
                     dut.nak_request.eq(self.nak_request), dut.commit.eq(self.commit),
                     dut.advertised.eq(self.advertised), dut.dllp.ready.eq(self.ready),
                     Assume(~ResetSignal())]
        head = dut.dllp.payload
        offered = {kind: dut.dllp.valid & (head.kind == kind) for kind in FrameKind}
        taken = {kind: offered[kind] & self.ready for kind in FrameKind}
        gap, nak_owed, ack_owed = Signal(), Signal(), Signal()
        with m.If(taken[FrameKind.NAK]):
            m.d.sync += [nak_owed.eq(0), ack_owed.eq(0)]
        with m.If(taken[FrameKind.ACK]):
            m.d.sync += ack_owed.eq(0)
        with m.If(self.nak_request & ~gap):
            m.d.sync += [nak_owed.eq(1), gap.eq(1)]
        with m.If(self.ack_request):
            m.d.sync += ack_owed.eq(1)
        with m.If(self.commit):
            m.d.sync += [nak_owed.eq(0), gap.eq(0)]
        acking = offered[FrameKind.ACK] | offered[FrameKind.NAK]
        m.d.comb += [
            Assert(offered[FrameKind.NAK] == nak_owed),
            Assert(offered[FrameKind.ACK] == (ack_owed & ~nak_owed)),
            Assert(~dut.dllp.valid | (head.length == 0)),
            Assert(~acking | ((head.seq == mod_seq(self.expected - 1)) & (head.tc == 0))),
            Assert(~offered[FrameKind.FC]
                   | (head.seq == Mux(head.tc, self.advertised[1], self.advertised[0]))),
            Cover(taken[FrameKind.NAK]), Cover(taken[FrameKind.ACK] & self.nak_request & gap),
            Cover(taken[FrameKind.FC] & (head.tc == TrafficClass.IO)),
            Cover(taken[FrameKind.FC] & (head.tc == TrafficClass.MIG)),
        ]
        return m


BLOCK = FormalBlock("link_dllp", LinkDllpHarness, depth=12, prove_depth=None,
                    cover_depth=12, faults=("never_nak",), test_depth=4)
