"""The replay buffer of a link transmitter: packets kept until the other port ACKs them."""

# No ``from __future__ import annotations``: wiring.Component reads the member annotations.
from amaranth.hdl import Module, Mux
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from model.link import SEQ_BITS, LinkParams

from .common import AckEvent, check_link_part, mod_seq

REPLAY_FAULTS = ("drop_oldest",)


class ReplayBuffer(wiring.Component):
    """``replay_slots`` slots of ``slot_rows`` flit rows; the packet of sequence number
    ``s`` lives in slot ``s % replay_slots`` from its fill (``push``) until an ACK or NAK
    acknowledges it (go-back-N: an ACK of ``s`` acknowledges every packet up to ``s``).

    Parameters
    ----------
    params : model.link.LinkParams
    _fault_inject : None or ``"drop_oldest"`` (tests only: an ACK that makes progress also
        frees the oldest packet it did not acknowledge).

    Members
    -------
    wr_addr, wr_en, wr_data : In
        Write port (``wr_en`` one bit per 32-bit word of the flit) of the packet filling.
    push : In(1)
        The packet ``head`` is complete.
    rd_addr, rd_en : In, rd_data : Out(link_width)
        Synchronous read port (latency 1) for the sender.
    sent_hi : In(SEQ_BITS)
        One past the newest packet ever sent: ACKs beyond it are ignored (stale or foreign).
    ack : In(AckEvent)
        A good ACK/NAK DLLP from the other port.
    head : Out(SEQ_BITS)
        Sequence number of the packet filling (one past the newest stored).
    tail : Out(SEQ_BITS)
        The oldest unacknowledged packet (registered).
    tail_next : Out(SEQ_BITS)
        ``tail`` after this cycle's ``ack`` (latency 0).
    progress : Out(1)
        This cycle's ``ack`` acknowledges at least one new packet.
    nak : Out(1)
        This cycle's ``ack`` is an accepted NAK: replay from ``tail_next``.
    """

    def __init__(self, params: LinkParams, *, _fault_inject: str | None = None):
        check_link_part("ReplayBuffer", params, _fault_inject, REPLAY_FAULTS)
        self.params, self._fault_inject = params, _fault_inject
        depth = params.replay_slots * params.slot_rows
        super().__init__({
            "wr_addr": In(range(depth)), "wr_en": In(params.words_per_flit),
            "wr_data": In(params.link_width), "push": In(1),
            "rd_addr": In(range(depth)), "rd_en": In(1), "rd_data": Out(params.link_width),
            "sent_hi": In(SEQ_BITS), "ack": In(AckEvent),
            "head": Out(SEQ_BITS), "tail": Out(SEQ_BITS), "tail_next": Out(SEQ_BITS),
            "progress": Out(1), "nak": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        m.submodules.memory = mem = Memory(shape=p.link_width,
                                           depth=p.replay_slots * p.slot_rows, init=[])
        wp = mem.write_port(granularity=32)
        rp = mem.read_port()
        m.d.comb += [wp.addr.eq(self.wr_addr), wp.en.eq(self.wr_en), wp.data.eq(self.wr_data),
                     rp.addr.eq(self.rd_addr), rp.en.eq(self.rd_en), self.rd_data.eq(rp.data)]
        with m.If(self.push):
            m.d.sync += self.head.eq(self.head + 1)

        acked_through = mod_seq(self.ack.seq + 1)
        ack_distance = mod_seq(acked_through - self.tail)
        ack_ok = self.ack.valid & (ack_distance <= mod_seq(self.sent_hi - self.tail))
        progress = ack_ok & (ack_distance != 0)
        freed = acked_through
        if self._fault_inject == "drop_oldest":
            freed = mod_seq(acked_through + progress)
        m.d.comb += [self.tail_next.eq(Mux(ack_ok, freed, self.tail)),
                     self.progress.eq(progress), self.nak.eq(ack_ok & self.ack.nak)]
        m.d.sync += self.tail.eq(self.tail_next)
        return m


__all__ = ["ReplayBuffer", "REPLAY_FAULTS"]
