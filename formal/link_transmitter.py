"""Formal harness of the link transmitter and its replay buffer (``hdl/link/transmitter.py``,
``hdl/link/replay_buffer.py``).

Free: both message streams, ``avail`` (credits), the DLLPs to send (any header but a DATA
one: the scheduler sends only ACK, NAK and FC) and the other port's ACK/NAK DLLPs, which
are assumed to acknowledge only what the wire carried: an ACK or NAK of ``seq`` has
``seq + 1`` between the oldest unacknowledged packet and one past the newest sent (a peer
acknowledges only packets it received; stale or foreign ACKs are left out). The harness
reads the wire: a DATA frame's header (first flit) and its payload (second flit).
Asserted:

* **replay**: after a NAK or a replay timeout (``tx_timeouts``), the first DATA frame the
  transmitter starts is the oldest unacknowledged packet (the NAK's ``seq + 1``), unless an
  ACK acknowledged that one meanwhile; frames already in the sender's two-stage pipeline
  when the NAK came, and the one started in its cycle (the go-back acts a cycle late), are
  not counted;
* the wire never carries a packet newer than the next new one (no packet skipped);
* **replay buffer**: at most ``replay_slots`` packets filled and unacknowledged, a beat is
  written only into a slot whose packet was acknowledged (never overflows), and every DATA
  frame sent, first or replayed, carries the payload, class and ``eom`` that were filled
  for its sequence number (no unacknowledged packet dropped or overwritten).

Formal size: 32-bit flits, packets of 1 word (frames of 3 flits), 2 replay slots, the
replay timeout of ``REPLAY_TIMEOUT`` cycles (below LinkParams' minimum, see there),
``mig_share`` 1; 12-bit sequence numbers; payload words of ``DATA_BITS`` bits and one fixed
DLLP (assumed, for solver time).
"""

from __future__ import annotations

from amaranth.hdl import Assert, Assume, Cover, Module, Mux, ResetSignal, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In

from hdl.link import LinkTransmitter
from hdl.link.common import LinkHeader, mod_seq
from model.link import SEQ_BITS, FrameKind, LinkParams, TrafficClass

from .core import FormalBlock

__all__ = ["BLOCK", "LinkTransmitterHarness", "PARAMS"]

PARAMS = LinkParams(link_width=32, replay_slots=2, max_payload_words=1, mig_share=1)
# Formal size: the replay timer fires after REPLAY_TIMEOUT cycles instead of LinkParams'
# minimum of 22 (two maximum frames + 16, which keeps a live link from replaying early:
# progress, not safety), so a timeout and its replay fit in a short BMC. The timer logic is
# the same for every value.
REPLAY_TIMEOUT = 6
object.__setattr__(PARAMS, "replay_timeout", REPLAY_TIMEOUT)
SLOTS = PARAMS.replay_slots
HALF = 1 << (SEQ_BITS - 1)
DATA_BITS = 2


class LinkTransmitterHarness(wiring.Component):
    """The transmitter with free messages, credits and DLLPs, and a peer that ACKs or NAKs
    only what it was sent."""

    def __init__(self, fault: str | None = None):
        self.dut = LinkTransmitter(PARAMS, _fault_inject=fault)
        super().__init__({
            "io_valid": In(1), "io_data": In(32), "io_last": In(1),
            "mig_valid": In(1), "mig_data": In(32), "mig_last": In(1),
            "dllp_valid": In(1), "dllp": In(LinkHeader), "avail": In(2),
            "ack_valid": In(1), "ack_seq": In(SEQ_BITS), "ack_nak": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = self.dut
        m.d.comb += [
            dut.io_in.valid.eq(self.io_valid), dut.io_in.payload.data.eq(self.io_data),
            dut.io_in.payload.last.eq(self.io_last),
            dut.mig_in.valid.eq(self.mig_valid), dut.mig_in.payload.data.eq(self.mig_data),
            dut.mig_in.payload.last.eq(self.mig_last),
            dut.dllp.valid.eq(self.dllp_valid), dut.dllp.payload.eq(self.dllp),
            dut.avail.eq(self.avail),
            dut.ack.valid.eq(self.ack_valid), dut.ack.seq.eq(self.ack_seq),
            dut.ack.nak.eq(self.ack_nak),
            Assume(~ResetSignal()),
            # Solver time: payload words of DATA_BITS bits tell the packets apart, and the
            # DLLPs sent are one fixed ACK (their timing, not their content, matters here).
            Assume(self.io_data < (1 << DATA_BITS)), Assume(self.mig_data < (1 << DATA_BITS)),
            Assume(self.dllp.as_value() == FrameKind.ACK),
        ]
        tail = Signal(SEQ_BITS)      # oldest unacknowledged packet, from the ACKs seen
        sent_hi = Signal(SEQ_BITS)   # one past the newest packet seen on the wire
        filled = Signal(SEQ_BITS)    # packets filled (``spend``s)
        acked_through = mod_seq(self.ack_seq + 1)
        m.d.comb += Assume(~self.ack_valid
                           | (mod_seq(acked_through - tail) <= mod_seq(sent_hi - tail)))
        tail_next = Mux(self.ack_valid, acked_through, tail)
        m.d.sync += tail.eq(tail_next)
        with m.If(dut.spend):
            m.d.sync += filled.eq(filled + 1)
        self._buffer(m, dut, tail, filled)
        self._wire(m, dut, tail, tail_next, sent_hi)
        return m

    def _buffer(self, m: Module, dut, tail, filled) -> None:
        """What was filled per slot; the slots are never overfilled."""
        beat_io = self.io_valid & dut.io_in.ready
        beat_mig = self.mig_valid & dut.mig_in.ready
        beat = beat_io | beat_mig
        self.stored = [Signal(data.StructLayout({"data": 32, "tc": 1, "eom": 1}),
                              name=f"stored_{i}") for i in range(SLOTS)]
        with m.If(beat):
            with m.Switch(filled[:SLOTS.bit_length() - 1]):
                for i, slot in enumerate(self.stored):
                    with m.Case(i):
                        m.d.sync += [slot.data.eq(Mux(beat_mig, self.mig_data, self.io_data)),
                                     slot.tc.eq(beat_mig),
                                     slot.eom.eq(Mux(beat_mig, self.mig_last, self.io_last))]
        unacked = mod_seq(filled - tail)
        m.d.comb += [Assert(unacked <= SLOTS), Assert(~beat | (unacked < SLOTS)),
                     Assert(~(beat_io & beat_mig)), Cover(unacked == SLOTS),
                     Cover(dut.spend & (dut.spend_tc == TrafficClass.MIG))]

    def _wire(self, m: Module, dut, tail, tail_next, sent_hi) -> None:
        """DATA frames on the wire: in order after a replay, with the payload filled."""
        tx = dut.tx
        head = data.View(LinkHeader, tx.flit)
        data_sop = tx.valid & tx.sop & (head.kind == FrameKind.DATA)
        behind = lambda seq: mod_seq(seq - tail)[SEQ_BITS - 1]  # noqa: E731
        m.d.comb += Assert(~data_sop | (mod_seq(sent_hi - head.seq) < HALF))
        with m.If(data_sop & (head.seq == sent_hi)):
            m.d.sync += sent_hi.eq(sent_hi + 1)
        # A replay event of cycle t binds the frames the sender starts from t + 1 on (the
        # go-back acts a cycle late, from the registered tail); their first flit is on the
        # wire two cycles after they start (stage 2, then the wire register).
        event = (self.ack_valid & self.ack_nak) | dut.events.tx_timeouts
        ev = [Signal(name=f"replay_ev_{i}") for i in range(3)]
        ev_from = [Signal(SEQ_BITS, name=f"replay_from_{i}") for i in range(3)]
        owed, owed_from = Signal(), Signal(SEQ_BITS)
        m.d.sync += [ev[0].eq(event), ev_from[0].eq(tail_next)]
        m.d.sync += [ev[i + 1].eq(ev[i]) for i in range(2)]
        m.d.sync += [ev_from[i + 1].eq(ev_from[i]) for i in range(2)]
        owed_now = owed | ev[2]
        from_now = Mux(ev[2], ev_from[2], owed_from)
        m.d.sync += [owed.eq(owed_now & ~data_sop), owed_from.eq(from_now)]
        m.d.comb += Assert(~(data_sop & owed_now) | (head.seq == from_now) | behind(from_now))
        # The payload flit follows the header flit.
        prev_sop, prev_seq = Signal(), Signal(SEQ_BITS)
        prev_head = Signal(LinkHeader)
        m.d.sync += [prev_sop.eq(data_sop), prev_seq.eq(head.seq), prev_head.eq(head)]
        slot = Signal.like(self.stored[0])
        with m.Switch(prev_seq[:SLOTS.bit_length() - 1]):
            for i, stored in enumerate(self.stored):
                with m.Case(i):
                    m.d.comb += slot.eq(stored)
        m.d.comb += [
            Assert(~prev_sop | (tx.valid & ~tx.sop & (tx.flit == slot.data)
                                & (prev_head.tc == slot.tc) & (prev_head.eom == slot.eom)
                                & (prev_head.length == 1))),
            Cover(data_sop & owed_now & (head.seq == from_now) & ev[2] & ev_from[2].any()),
            Cover(data_sop & owed_now & (head.seq != sent_hi)),
            Cover(dut.events.tx_timeouts & (sent_hi != tail)),
            Cover(prev_sop & (prev_head.tc == TrafficClass.MIG) & (prev_seq == 1)),
        ]


BLOCK = FormalBlock("link_transmitter", LinkTransmitterHarness, depth=16, prove_depth=None,
                    cover_depth=16, faults=("ignore_nak", "drop_oldest"), test_depth=10,
                    script=("memory_map", "opt -fast"))
