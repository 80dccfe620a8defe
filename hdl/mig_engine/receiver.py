"""The receiving side of one device's migration engine: the target role and the dispatch of
answers to the source role."""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from model.protocol import Malformed, MsgType, Reason
from model.state import ImageLayout
from model.vfio import DeviceState

from ..formats import ChunkBeat, DmaStatus, bits_for, descriptor_layout
from ..migproto import malformed_event_layout, message_header_layout
from ..vf_unit import DIGEST_LATENCY
from .vf_table import table_write_layout

#: Cycles a control message waits in DISPATCH: the last DMA write reaches the digest first.
SETTLE = DIGEST_LATENCY + 1

S = DeviceState


class TargetReceiver(wiring.Component):
    """Act on each well-formed message from the other device's engine.

    *Target role*: MIG_BEGIN allocates the free slot (or MIG_REJECT: busy, unsupported image
    size, VF already present, no slot); STATE_DATA of the incoming VF is written through the
    DMA; SWITCHOVER checks the slot's digest (ABORT on a mismatch, on a DMA write error or
    on a chunk the decoder dropped for its framing or CRC); COMMIT makes the VF RUNNING
    here.  *Source role*: ACCEPT, REJECT, COMMIT_ACK, ABORT_ACK and ABORT of the outgoing
    VF become one-cycle events for the walker.  A message wrong in its protocol state is
    dropped and reported on ``unexpected`` (SWITCHOVER and COMMIT are answered with ERROR).

    Members
    -------
    header : In(stream of message_header_layout)    the decoder's headers
    payload : In(stream of ChunkBeat)   the decoder's payload words (drained when unused)
    lost : In(malformed_event_layout)   the decoder's drop events
    unexpected : Out(1)                 to the decoder: count this message as dropped
    reply : Out(stream of message_header_layout)   answers, to the encoder (registered)
    wr_desc, wr_data : Out(stream); wr_done : In(stream)   the DMA writes of STATE_DATA
    digest : In(ArrayLayout(32, n_slots))   the VF unit's image digests
    state : In(ArrayLayout(3, n_vfs)); present : In(n_vfs); free_slot, have_free : In
        the per-VF table; ``tgt_wr`` : Out(table_write_layout) writes it
    src_active, src_opening, src_vf : In   the outgoing migration (answers for it)
    ev_accept, ev_reject, ev_commit_ack, ev_abort_ack : Out(1); ev_reason : Out(4)
    remote_abort : Out(1); remote_reason : Out(4)   the target aborted the outgoing VF

    Latency: a header is taken the cycle it is valid; a control message is acted on
    ``DIGEST_LATENCY + 1`` or more cycles later (the VF unit's digest follows a DMA write
    within ``DIGEST_LATENCY`` cycles), after the previous reply has left; a STATE_DATA
    payload streams at one word per cycle.
    """

    def __init__(self, layout: ImageLayout, n_vfs: int, n_slots: int):
        self.layout, self.n_vfs, self.n_slots = layout, n_vfs, n_slots
        vf_bits, slot_bits = bits_for(n_vfs), bits_for(n_slots)
        super().__init__({
            "header": In(stream.Signature(message_header_layout())),
            "payload": In(stream.Signature(ChunkBeat)),
            "lost": In(malformed_event_layout()),
            "unexpected": Out(1),
            "reply": Out(stream.Signature(message_header_layout())),
            "wr_desc": Out(stream.Signature(descriptor_layout(layout, n_slots))),
            "wr_data": Out(stream.Signature(ChunkBeat)),
            "wr_done": In(stream.Signature(DmaStatus)),
            "digest": In(data.ArrayLayout(32, n_slots)),
            "state": In(data.ArrayLayout(3, n_vfs)), "present": In(n_vfs),
            "free_slot": In(slot_bits), "have_free": In(1),
            "tgt_wr": Out(table_write_layout(n_vfs, n_slots)),
            "src_active": In(1), "src_opening": In(1), "src_vf": In(vf_bits),
            "ev_accept": Out(1), "ev_reject": Out(1), "ev_commit_ack": Out(1),
            "ev_abort_ack": Out(1), "ev_reason": Out(4),
            "remote_abort": Out(1), "remote_reason": Out(4),
        })

    def elaborate(self, platform):
        m = Module()
        vf_bits, slot_bits = bits_for(self.n_vfs), bits_for(self.n_slots)
        self.tgt_active = Signal()
        self.tgt_vf = Signal(vf_bits)
        self.tgt_slot = Signal(slot_bits)
        self.tgt_verified = Signal()
        self.tgt_data_error = Signal()
        incoming = self.header.payload
        self.hdr = hdr = Signal.like(incoming)             # the message being handled
        self.settle = Signal(range(SETTLE + 1))

        # A chunk of the incoming image that the decoder dropped for its framing or CRC (its
        # header was sound, so its VF id is) is lost: the image is refused at SWITCHOVER
        # with reason CRC, as if the DMA had found the error.
        lost = self.lost
        with m.If(lost.valid & self.tgt_active & (lost.type == MsgType.STATE_DATA)
                  & (lost.vf == self.tgt_vf)
                  & lost.reason.matches(Malformed.FRAMING, Malformed.CRC)):
            m.d.sync += self.tgt_data_error.eq(1)

        m.d.comb += [
            self.wr_desc.payload.slot.eq(self.tgt_slot),
            self.wr_desc.payload.offset.eq(hdr.arg),
            self.wr_desc.payload.length.eq(hdr.length),
            self.wr_done.ready.eq(1),
        ]
        with m.FSM(name="receiver"):
            self._header_and_data(m)
            with m.State("DISPATCH"):
                # Wait for the previous reply to leave and for the last DMA write to reach
                # the slot's digest (``DIGEST_LATENCY`` cycles after the write, at most).
                m.d.sync += self.settle.eq(self.settle + (self.settle != SETTLE))
                with m.If(~self.reply.valid & (self.settle == SETTLE)):
                    m.next = "HEADER"
                    self._dispatch(m)

        with m.If(self.reply.valid & self.reply.ready):
            m.d.sync += self.reply.valid.eq(0)
        return m

    def _header_and_data(self, m: Module) -> None:
        """HEADER takes a message; STATE_DATA of the incoming VF goes to the DMA, other
        payloads are drained."""
        incoming, hdr = self.header.payload, self.hdr
        with m.State("HEADER"):
            m.d.comb += self.header.ready.eq(1)
            receiving = (self.tgt_active & (incoming.vf == self.tgt_vf)
                         & (self.state[self.tgt_vf] == S.RESUMING))
            with m.If(self.header.valid):
                m.d.sync += [hdr.eq(incoming), self.settle.eq(0)]
                with m.Switch(incoming.type):
                    with m.Case(MsgType.STATE_DATA):
                        with m.If(receiving):
                            m.next = "DATA_DESC"
                        with m.Else():
                            m.d.comb += self.unexpected.eq(1)
                            m.next = "DRAIN"
                    with m.Case(MsgType.ROUND_END):  # a progress report: nothing to do
                        with m.If(~receiving):
                            m.d.comb += self.unexpected.eq(1)
                        m.next = "DRAIN"
                    with m.Default():
                        m.next = "DISPATCH"
        with m.State("DRAIN"):
            m.d.comb += self.payload.ready.eq(1)
            with m.If(self.payload.valid & self.payload.payload.last):
                m.next = "HEADER"
        with m.State("DATA_DESC"):
            m.d.comb += self.wr_desc.valid.eq(1)
            with m.If(self.wr_desc.ready):
                m.next = "DATA"
        with m.State("DATA"):
            # The payload words and the CRC word: the DMA's chunk format (it re-checks
            # the CRC end to end).
            wiring.connect(m, wiring.flipped(self.payload), wiring.flipped(self.wr_data))
            with m.If(self.payload.valid & self.wr_data.ready & self.payload.payload.last):
                m.next = "DATA_DONE"
        with m.State("DATA_DONE"):
            with m.If(self.wr_done.valid):
                with m.If(self.wr_done.payload.as_value().any()):
                    m.d.sync += self.tgt_data_error.eq(1)
                m.next = "HEADER"

    def _dispatch(self, m: Module) -> None:
        """Act on the control message in ``hdr`` (one cycle, in DISPATCH)."""
        hdr, vf_bits = self.hdr, bits_for(self.n_vfs)
        msg_type, msg_vf, msg_reason, arg = hdr.type, hdr.vf[:vf_bits], hdr.reason, hdr.arg
        tgt_vf, tgt_slot = self.tgt_vf, self.tgt_slot
        for_target = self.tgt_active & (msg_vf == tgt_vf)
        for_source = (self.src_active | self.src_opening) & (msg_vf == self.src_vf)
        opening = for_source & self.src_opening
        wr = self.tgt_wr

        def send_reply(type_, arg_=0, reason_=Reason.NONE):
            m.d.sync += [self.reply.valid.eq(1), self.reply.payload.type.eq(type_),
                         self.reply.payload.arg.eq(arg_), self.reply.payload.reason.eq(reason_),
                         self.reply.payload.vf.eq(msg_vf), self.reply.payload.length.eq(0)]

        def unexpected():
            m.d.comb += self.unexpected.eq(1)

        def write(vf, **fields):
            m.d.comb += wr.vf.eq(vf)
            for name, value in fields.items():
                m.d.comb += [getattr(wr, f"{name}_we").eq(1), getattr(wr, name).eq(value)]

        def discard_incoming():
            m.d.sync += self.tgt_active.eq(0)
            write(tgt_vf, present=0)

        with m.Switch(msg_type):
            with m.Case(MsgType.BEGIN):
                with m.If(self.tgt_active):
                    send_reply(MsgType.REJECT, 0, Reason.BUSY)
                with m.Elif(arg != self.layout.image_words):
                    send_reply(MsgType.REJECT, 0, Reason.UNSUPPORTED)
                with m.Elif(self.present.bit_select(msg_vf, 1)):
                    send_reply(MsgType.REJECT, 0, Reason.PROTOCOL)
                with m.Elif(~self.have_free):
                    send_reply(MsgType.REJECT, 0, Reason.NO_SLOT)
                with m.Else():
                    m.d.sync += [self.tgt_active.eq(1), tgt_vf.eq(msg_vf),
                                 tgt_slot.eq(self.free_slot), self.tgt_verified.eq(0),
                                 self.tgt_data_error.eq(0)]
                    write(msg_vf, present=1, here=0, slot=self.free_slot, state=S.RESUMING,
                          requested=S.RESUMING)
                    send_reply(MsgType.ACCEPT, self.free_slot)
            with m.Case(MsgType.SWITCHOVER):
                with m.If(for_target & (self.state[tgt_vf] == S.RESUMING)):
                    with m.If(self.tgt_data_error):
                        discard_incoming()
                        send_reply(MsgType.ABORT, 0, Reason.CRC)
                    with m.Elif(self.digest[tgt_slot] != arg):
                        discard_incoming()
                        send_reply(MsgType.ABORT, 0, Reason.DIGEST)
                    with m.Else():  # leaving RESUMING checked the digest
                        m.d.sync += self.tgt_verified.eq(1)
                        write(tgt_vf, state=S.STOP)
                with m.Else():
                    unexpected()
                    send_reply(MsgType.ERROR, 0, Reason.PROTOCOL)
            with m.Case(MsgType.COMMIT):
                with m.If(for_target & self.tgt_verified):
                    # STOP -> RUNNING_P2P -> RUNNING: the VF serves from here and its
                    # pending interrupts replay once (irq_hold falls).
                    m.d.sync += self.tgt_active.eq(0)
                    write(tgt_vf, state=S.RUNNING, here=1, requested=S.RUNNING)
                    send_reply(MsgType.COMMIT_ACK, tgt_slot)
                with m.Elif(for_target):
                    discard_incoming()
                    send_reply(MsgType.ABORT, 0, Reason.PROTOCOL)
                with m.Else():
                    unexpected()
                    send_reply(MsgType.ERROR, 0, Reason.PROTOCOL)
            with m.Case(MsgType.ABORT):
                with m.If(for_target):
                    discard_incoming()
                    send_reply(MsgType.ABORT_ACK)
                with m.Elif(for_source):
                    m.d.comb += [self.remote_abort.eq(1), self.remote_reason.eq(msg_reason)]
                with m.Else():  # already gone: acknowledge so the peer can finish
                    send_reply(MsgType.ABORT_ACK)
            with m.Case(MsgType.ACCEPT):
                m.d.comb += self.ev_accept.eq(opening)
                with m.If(~opening):
                    unexpected()  # e.g. after WAIT_ACCEPT timed out
            with m.Case(MsgType.REJECT):
                m.d.comb += [self.ev_reject.eq(opening), self.ev_reason.eq(msg_reason)]
                with m.If(~opening):
                    unexpected()
            with m.Case(MsgType.COMMIT_ACK):
                m.d.comb += self.ev_commit_ack.eq(for_source)
                with m.If(~for_source):
                    unexpected()
            with m.Case(MsgType.ABORT_ACK):
                # Also the answer to an ABORT this target sent: not an error.
                m.d.comb += self.ev_abort_ack.eq(for_source)
            with m.Case(MsgType.ERROR):
                unexpected()  # the peer's complaint; never answered (no ping-pong)
