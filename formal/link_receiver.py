"""Formal harness of the link receiver (``hdl/link/receiver.py``, ``LinkReceiver``).

The wire is free: any flit, ``sop`` or gap in any cycle, so every go-back-N sender, every
replay, duplicate, gap, corruption and cut-short frame is among the inputs (a good LCRC is
whatever the solver makes it). ``used`` (the receive buffers' rows) is free up to the
buffer's size. The harness registers the wire as the receiver does and keeps the header of
the last frame start it saw; ``count`` counts the packets handed up. Asserted:

* the packets handed up (``commit``) are 0, 1, 2, ... in sequence order, each once: a
  committed frame carries sequence number ``count``, and ``expected`` is ``count``;
* only DATA frames are handed up, to their own class, and each committed packet is ACKed;
* the receiver's frame-in-progress header is the one the harness saw at the frame's start
  (the invariant k-induction needs).

Formal size: 64-bit flits (two words), packets of at most 2 words (frames of 1 or 2 flits),
2 replay slots, receive buffers of 8 rows; sequence numbers are the real 12 bits.
"""

from __future__ import annotations

from amaranth.hdl import Assert, Assume, Cover, Module, Mux, ResetSignal, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In

from hdl.link import LinkReceiver
from hdl.link.common import LinkHeader, SeqPair
from model.link import FrameKind, LinkParams, TrafficClass

from .core import FormalBlock

__all__ = ["BLOCK", "LinkReceiverHarness", "PARAMS"]

PARAMS = LinkParams(link_width=64, replay_slots=2, max_payload_words=2)


class LinkReceiverHarness(wiring.Component):
    """The receiver on a free wire; ports: the wire and ``used``."""

    def __init__(self, fault: str | None = None):
        self.dut = LinkReceiver(PARAMS, _fault_inject=fault)
        super().__init__({"rx_valid": In(1), "rx_sop": In(1), "rx_flit": In(PARAMS.link_width),
                          "used": In(SeqPair)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = self.dut
        m.d.comb += [dut.rx.valid.eq(self.rx_valid), dut.rx.sop.eq(self.rx_sop),
                     dut.rx.flit.eq(self.rx_flit), dut.used.eq(self.used),
                     Assume(~ResetSignal())]
        for tc in TrafficClass:
            m.d.comb += Assume(self.used[tc] <= PARAMS.rx_buffer_flits)
        # The wire as the receiver sees it (it registers its input), and the header of the
        # frame in progress: the last frame start.
        r_valid, r_sop = Signal(), Signal()
        r_head = Signal(LinkHeader)
        m.d.sync += [r_valid.eq(self.rx_valid), r_sop.eq(self.rx_sop),
                     r_head.eq(self.rx_flit[:32])]
        start = r_valid & r_sop
        last_head = Signal(LinkHeader)
        with m.If(start):
            m.d.sync += last_head.eq(r_head)
        frame = data.View(LinkHeader, Mux(start, r_head, last_head))
        count = Signal.like(dut.expected)
        with m.If(dut.commit):
            m.d.sync += count.eq(count + 1)
        m.d.comb += [
            Assert(dut.expected == count),
            Assert(~dut.commit | ((frame.seq == count) & (frame.kind == FrameKind.DATA)
                                  & (dut.commit_tc == frame.tc) & dut.ack_request)),
            Assert(~dut._f_active | (dut._f_hdr.as_value() == last_head.as_value())),
        ]
        ev = dut.events
        m.d.comb += [
            Cover(dut.commit & (dut.commit_tc == TrafficClass.IO)),
            Cover(dut.commit & (dut.commit_tc == TrafficClass.MIG) & (frame.length == 2)),
            Cover(dut.commit & (count == 1)),
            Cover(ev.rx_duplicates & (count == 1)),
            Cover(ev.rx_seq_errors), Cover(ev.rx_crc_errors != 0),
            Cover(ev.rx_overflows), Cover(dut.ack.valid & dut.ack.nak), Cover(dut.fc.valid),
        ]
        return m


BLOCK = FormalBlock("link_receiver", LinkReceiverHarness, depth=12, prove_depth=4,
                    cover_depth=8, faults=("accept_duplicate",), test_depth=4)
