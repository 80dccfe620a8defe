"""ACK/NAK and credit logic of a link port: which DLLP to send next (``DllpScheduler``) and
whether the transmitter may start a packet of a class (``LinkCredits``)."""

# No ``from __future__ import annotations``: wiring.Component reads the member annotations.
from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from model.link import SEQ_BITS, FrameKind, LinkParams, TrafficClass

from .common import FcEvent, LinkHeader, SeqPair, check_link_part, mod_seq

SCHEDULER_FAULTS = ("never_nak",)
CREDIT_FAULTS = ("no_credit_check",)


class DllpScheduler(wiring.Component):
    """Holds the ACK, NAK and FC DLLPs the receiver owes the other port, highest priority
    first: NAK, ACK, FC of TC_IO, FC of TC_MIG.

    A NAK is sent once per gap (``nak_scheduled`` until the next in-order packet); an ACK
    or NAK carries the last good sequence number; an FC DLLP carries a class's absolute
    credit limit and is due when ``fc_threshold`` rows were freed since the last one, and
    for both classes every ``fc_refresh`` cycles (repeating repairs a lost FC DLLP).

    Parameters
    ----------
    params : model.link.LinkParams
    _fault_inject : None or ``"never_nak"`` (tests only: NAK requests are ignored).

    Members
    -------
    expected : In(SEQ_BITS)
        The receiver's next expected sequence number.
    ack_request, nak_request, commit : In(1)
        From ``LinkReceiver``: an ACK is due, a NAK is due, an in-order packet was
        committed (which ends the gap a NAK reported).
    advertised : In(ArrayLayout(SEQ_BITS, 2))
        Each receive buffer's credit limit.
    dllp : Out(stream of LinkHeader)
        The DLLP to send; ``ready`` when the sender starts a frame (it then sends this
        one). Requests arriving in the cycle a DLLP is taken are kept (latency 1).
    naks_sent : Out(1)
        A NAK DLLP is taken this cycle.
    """

    def __init__(self, params: LinkParams, *, _fault_inject: str | None = None):
        check_link_part("DllpScheduler", params, _fault_inject, SCHEDULER_FAULTS)
        self.params, self._fault_inject = params, _fault_inject
        super().__init__({
            "expected": In(SEQ_BITS),
            "ack_request": In(1), "nak_request": In(1), "commit": In(1),
            "advertised": In(SeqPair),
            "dllp": Out(stream.Signature(LinkHeader)),
            "naks_sent": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        ack_pending = Signal()
        nak_pending = Signal()
        nak_scheduled = Signal()
        advertised = self.advertised
        fc_sent = [Signal(SEQ_BITS, name=f"fc_sent_{tc.name.lower()}") for tc in TrafficClass]
        fc_due = [Signal(init=1, name=f"fc_due_{tc.name.lower()}") for tc in TrafficClass]
        fc_pending = [fc_due[tc] | (mod_seq(advertised[tc] - fc_sent[tc]) >= p.fc_threshold)
                      for tc in TrafficClass]
        acking = nak_pending | ack_pending
        fc_tc = ~fc_pending[TrafficClass.IO]
        last_good = mod_seq(self.expected - 1)
        m.d.comb += [
            self.dllp.valid.eq(acking | fc_pending[0] | fc_pending[1]),
            self.dllp.payload.eq(Cat(
                Mux(nak_pending, FrameKind.NAK, Mux(ack_pending, FrameKind.ACK, FrameKind.FC)),
                ~acking & fc_tc, Const(0, 1),
                Mux(acking, last_good, Mux(fc_tc, advertised[1], advertised[0])),
                Const(0, 16))),
        ]
        fc_timer = Signal(range(p.fc_refresh))
        with m.If(fc_timer == p.fc_refresh - 1):
            # Credit limits are absolute, so repeating them repairs any lost FC DLLP.
            m.d.sync += [fc_timer.eq(0), *(due.eq(1) for due in fc_due)]
        with m.Else():
            m.d.sync += fc_timer.eq(fc_timer + 1)

        with m.If(self.dllp.ready):
            with m.If(nak_pending):
                m.d.comb += self.naks_sent.eq(1)
                m.d.sync += [nak_pending.eq(0), ack_pending.eq(0)]
            with m.Elif(ack_pending):
                m.d.sync += ack_pending.eq(0)
            for tc in TrafficClass:
                with m.Elif(fc_pending[tc]):
                    m.d.sync += [fc_sent[tc].eq(advertised[tc]), fc_due[tc].eq(0)]

        # After the statements above: a request in the cycle its flag is cleared stays set,
        # so no ACK or NAK request is lost.
        nak_request = 0 if self._fault_inject == "never_nak" else self.nak_request
        with m.If(nak_request & ~nak_scheduled):
            m.d.sync += [nak_pending.eq(1), nak_scheduled.eq(1)]
        with m.If(self.ack_request):
            m.d.sync += ack_pending.eq(1)
        with m.If(self.commit):
            m.d.sync += [nak_pending.eq(0), nak_scheduled.eq(0)]
        return m


class LinkCredits(wiring.Component):
    """The transmitter's view of the other receiver's buffers: per class, the credit limit
    from the last FC DLLP and the rows spent; a packet may start only with credit for a
    maximum packet (``slot_rows``), so a started packet always fits.

    Parameters
    ----------
    params : model.link.LinkParams
    _fault_inject : None or ``"no_credit_check"`` (tests only: ``avail`` is always 1).

    Members
    -------
    fc : In(FcEvent)
        A good FC DLLP; a limit below what was already spent (stale or foreign) is ignored.
    spend, spend_tc, spend_rows : In
        A packet of ``spend_rows`` rows of class ``spend_tc`` is finished this cycle.
    avail : Out(2)
        Per class: credit for a maximum packet, counting this cycle's ``spend`` (latency
        0, so the next packet can start right after one finishes).
    """

    def __init__(self, params: LinkParams, *, _fault_inject: str | None = None):
        check_link_part("LinkCredits", params, _fault_inject, CREDIT_FAULTS)
        self.params, self._fault_inject = params, _fault_inject
        # Per class: the credit limit and the rows spent, created here so the formal harness
        # (formal/link_credits.py) can tie them to its model: its k-induction needs that.
        self._limit = [Signal(SEQ_BITS, name=f"credit_limit_{tc.name.lower()}")
                       for tc in TrafficClass]
        self._consumed = [Signal(SEQ_BITS, name=f"credit_used_{tc.name.lower()}")
                          for tc in TrafficClass]
        super().__init__({
            "fc": In(FcEvent),
            "spend": In(1), "spend_tc": In(1),
            "spend_rows": In(range(params.max_frame_flits + 1)),
            "avail": Out(2),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        for tc in TrafficClass:
            limit, consumed = self._limit[tc], self._consumed[tc]
            this = self.spend & (self.spend_tc == tc)
            spent = consumed + Mux(this, self.spend_rows, 0)
            if self._fault_inject == "no_credit_check":
                m.d.comb += self.avail[tc].eq(1)
            else:
                m.d.comb += self.avail[tc].eq(mod_seq(limit - spent) >= p.slot_rows)
            with m.If(this):
                m.d.sync += consumed.eq(consumed + self.spend_rows)
            with m.If(self.fc.valid & (self.fc.tc == tc)
                      & (mod_seq(self.fc.limit - consumed) <= p.rx_buffer_flits)):
                m.d.sync += limit.eq(self.fc.limit)
        return m


__all__ = ["DllpScheduler", "LinkCredits", "SCHEDULER_FAULTS", "CREDIT_FAULTS"]
