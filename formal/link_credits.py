"""Formal harness of the link's credit check (``hdl/link/flow_control.py``, ``LinkCredits``).

The harness models both ends of one direction, per traffic class. The other port's
receive buffer frees rows it holds (free ``free`` inputs) and its true credit limit is
rows freed + ``rx_buffer_flits``; an FC DLLP (free) carries a limit the receiver
advertised: not above the true limit, and (a wire does not reorder) not below the last
FC limit of its class. The transmitter (free ``start``/``finish``) starts a packet only
when ``avail`` shows credit for its class, while no other packet fills (or in the cycle
the filling one finishes, as ``LinkTransmitter`` does), and a packet finishes with 1 to
``slot_rows`` rows (``spend``). Asserted, per class:

* credits never go negative: the rows sent never pass the true limit, so the receive
  buffer never holds more than ``rx_buffer_flits`` rows;
* a started packet always fits: rows sent + ``slot_rows`` stay within the true limit
  while it fills;
* what ``LinkCredits`` holds: its rows spent are the harness's, its limit is the last FC
  limit, between the rows sent and the true limit (the invariants k-induction needs).

Formal size: 32-bit flits, packets of 1 word (2 rows), receive buffers of 8 rows; the
counters are the real 12 bits.
"""

from __future__ import annotations

from amaranth.hdl import Assert, Assume, Cover, Module, Mux, ResetSignal, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from hdl.link import LinkCredits
from hdl.link.common import mod_seq
from model.link import SEQ_BITS, LinkParams, TrafficClass

from .core import FormalBlock

__all__ = ["BLOCK", "LinkCreditsHarness", "PARAMS"]

PARAMS = LinkParams(link_width=32, replay_slots=2, max_payload_words=1)
HALF = 1 << (SEQ_BITS - 1)


class LinkCreditsHarness(wiring.Component):
    """The credit check between a free receiver and a transmitter that obeys ``avail``."""

    def __init__(self, fault: str | None = None):
        self.dut = LinkCredits(PARAMS, _fault_inject=fault)
        rows = range(PARAMS.max_frame_flits + 1)
        super().__init__({
            "fc_valid": In(1), "fc_tc": In(1), "fc_limit": In(SEQ_BITS), "free": In(2),
            "start": In(1), "start_tc": In(1), "finish": In(1), "rows": In(rows),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = self.dut
        p = PARAMS
        filling, fill_tc = Signal(), Signal()
        spend = filling & self.finish
        m.d.comb += [
            dut.fc.valid.eq(self.fc_valid), dut.fc.tc.eq(self.fc_tc),
            dut.fc.limit.eq(self.fc_limit),
            dut.spend.eq(spend), dut.spend_tc.eq(fill_tc), dut.spend_rows.eq(self.rows),
            Assume(~ResetSignal()),
            Assume(~spend | ((self.rows >= 1) & (self.rows <= p.slot_rows))),
            Assume(~self.start | (~filling | self.finish)),
            Assume(~self.start | Mux(self.start_tc, dut.avail[1], dut.avail[0])),
        ]
        with m.If(self.start):
            m.d.sync += [filling.eq(1), fill_tc.eq(self.start_tc)]
        with m.Elif(spend):
            m.d.sync += filling.eq(0)
        for tc in TrafficClass:
            name = tc.name.lower()
            sent = Signal(SEQ_BITS, name=f"sent_{name}")           # rows spent
            freed = Signal(SEQ_BITS, name=f"freed_{name}")         # rows the receiver freed
            last_fc = Signal(SEQ_BITS, name=f"last_fc_{name}", init=0)
            this = spend & (fill_tc == tc)
            with m.If(this):
                m.d.sync += sent.eq(sent + self.rows)
            m.d.sync += freed.eq(freed + self.free[tc])
            limit = mod_seq(freed + p.rx_buffer_flits)
            fc_this = self.fc_valid & (self.fc_tc == tc)
            with m.If(fc_this):
                m.d.sync += last_fc.eq(self.fc_limit)
            m.d.comb += [
                Assume(~self.free[tc] | (sent != freed)),
                Assume(~fc_this | ((mod_seq(limit - self.fc_limit) < HALF)
                                   & (mod_seq(self.fc_limit - last_fc) < HALF))),
                Assert(mod_seq(limit - sent) <= p.rx_buffer_flits),
                Assert(~(filling & (fill_tc == tc))
                       | (mod_seq(limit - sent) >= p.slot_rows)),
                # What the credit check holds (k-induction needs it): the rows spent, and
                # the last FC limit, which is never above the true one.
                Assert(dut._consumed[tc] == sent), Assert(dut._limit[tc] == last_fc),
                Assert(mod_seq(limit - last_fc) <= p.rx_buffer_flits),
                Assert(mod_seq(last_fc - sent) <= p.rx_buffer_flits),
                Assert(~(filling & (fill_tc == tc)) | (mod_seq(last_fc - sent) >= p.slot_rows)),
                Cover(this & (mod_seq(limit - sent) == self.rows)),
                Cover(self.start & (self.start_tc == tc) & self.finish & (fill_tc == tc)),
                Cover(this & (sent[2:] == 2)),
            ]
        return m


BLOCK = FormalBlock("link_credits", LinkCreditsHarness, depth=10, prove_depth=4,
                    cover_depth=12, faults=("no_credit_check",), test_depth=6)
