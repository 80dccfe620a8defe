"""The transmit side of a link port: packet fill, replay decision and the flit sender."""

# No ``from __future__ import annotations``: wiring.Component reads the member annotations.
from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from model.link import SEQ_BITS, FrameKind, LinkParams, TrafficClass

from ..crc32 import CRC32_INIT, CRC32_XOROUT
from ..formats import ChunkBeat
from .common import (
    AckEvent,
    FlitGeometry,
    LinkHeader,
    check_link_part,
    crc32_word_update,
    mod_seq,
    wire_signature,
)
from .replay_buffer import ReplayBuffer

TRANSMITTER_FAULTS = ("ignore_nak", "drop_oldest")
TX_EVENTS = data.StructLayout({"tx_flits": 1, "tx_packets": 1, "tx_replays": 1,
                               "tx_timeouts": 1, "naks_received": 1})


class LinkTransmitter(wiring.Component):
    """Store-and-forward transmitter with its ``ReplayBuffer`` (go-back-N).

    Arbitration picks a message stream (TC_IO or TC_MIG) when a replay slot is free and
    ``avail`` shows credit for a maximum packet; the fill copies up to
    ``max_payload_words`` beats (one per cycle) into the slot and writes the header word
    last (it holds the length). The sender reads slots from the replay buffer, one flit per
    cycle, computes the LCRC on the way out, and puts DLLPs first at frame boundaries.
    Packets stay in the replay buffer until acknowledged; a NAK or the replay timer
    (``replay_timeout`` cycles without ACK progress while no packet is on the wire)
    restarts sending at the oldest unacknowledged packet.

    Parameters
    ----------
    params : model.link.LinkParams
    _fault_inject : None, ``"ignore_nak"`` (tests only: only the timer starts a replay) or
        ``"drop_oldest"`` (the ``ReplayBuffer``'s planted bug, passed on to it).

    Members
    -------
    io_in, mig_in : In(stream of ChunkBeat)
        Messages to send; ``last`` ends a message (longer ones become several packets).
    tx : Out(wire_signature(link_width))
        The wire, registered.
    dllp : In(stream of LinkHeader)
        The next DLLP to send (``DllpScheduler``); taken at a frame boundary.
    ack : In(AckEvent)
        Good ACK/NAK DLLPs from the other port (``LinkReceiver.ack``).
    avail : In(2)
        Credit for a maximum packet per class (``LinkCredits.avail``).
    spend, spend_tc, spend_rows : Out
        A packet of ``spend_rows`` rows of class ``spend_tc`` finishes filling.
    events : Out(TX_EVENTS)
        Counter increments: tx_flits, tx_packets (first transmissions), tx_replays,
        tx_timeouts, naks_received.

    Latency: a message's first flit is on ``tx`` ``L + 4`` cycles after its first beat is
    accepted (L = words of its first packet), with no DLLP waiting.
    """

    def __init__(self, params: LinkParams, *, _fault_inject: str | None = None):
        check_link_part("LinkTransmitter", params, _fault_inject, TRANSMITTER_FAULTS)
        self.params, self._fault_inject = params, _fault_inject
        super().__init__({
            "io_in": In(stream.Signature(ChunkBeat)),
            "mig_in": In(stream.Signature(ChunkBeat)),
            "tx": Out(wire_signature(params.link_width)),
            "dllp": In(stream.Signature(LinkHeader)),
            "ack": In(AckEvent),
            "avail": In(2),
            "spend": Out(1), "spend_tc": Out(1),
            "spend_rows": Out(range(params.max_frame_flits + 1)),
            "events": Out(TX_EVENTS),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        rb_fault = "drop_oldest" if self._fault_inject == "drop_oldest" else None
        m.submodules.replay_buffer = rb = ReplayBuffer(p, _fault_inject=rb_fault)
        m.d.comb += rb.ack.eq(self.ack)
        # The sender stage-2 registers: the frame whose flit is built this cycle.
        s2 = Signal(data.StructLayout({
            "valid": 1, "data": 1,          # data: a DATA frame from the buffer, else a DLLP
            "row": range(p.max_frame_flits + 1), "seq": SEQ_BITS,
            "base": range(p.replay_slots * p.slot_rows), "len": range(p.max_payload_words + 1),
            "hdr": 32, "crc": 32}))
        send_seq = Signal(SEQ_BITS)   # next packet to send (goes back on a replay)
        tx_hi = Signal(SEQ_BITS)      # one past the newest packet ever sent
        m.d.comb += rb.sent_hi.eq(tx_hi)
        send_seq_next = self._replay_control(m, rb, s2, send_seq, tx_hi)
        self._fill(m, rb, s2)
        s2_last = self._build_flit(m, rb, s2)
        self._next_frame(m, rb, s2, s2_last, send_seq, send_seq_next, tx_hi)
        return m

    def slot_base(self, seq):
        """First row of the slot of sequence number ``seq``: a table of the slots' bases,
        not a multiplier (Yosys put each ``slot * slot_rows`` into a DSP block)."""
        p = self.params
        bases = Array(Const(slot * p.slot_rows, range(p.replay_slots * p.slot_rows))
                      for slot in range(p.replay_slots))
        return bases[seq[:p.replay_slots.bit_length() - 1]]

    def _replay_control(self, m, rb, s2, send_seq, tx_hi):
        """The replay timer and the go-back-N decision; returns the packet to send next."""
        p = self.params
        timer = Signal(range(p.replay_timeout + 1))
        timer_fired = timer >= p.replay_timeout
        nak = 0 if self._fault_inject == "ignore_nak" else rb.nak
        replay_now = nak | timer_fired
        # The go-back acts a cycle after its NAK or timeout, from the registered tail: the
        # ACK's sequence arithmetic and the replay buffer's read address in one cycle were
        # the slowest path of the FPGA build (45 MHz on an ECP5). A packet the ACK of that
        # cycle frees may be sent once more; the receiver drops it as a duplicate.
        replay = Signal()
        m.d.sync += replay.eq(replay_now)
        behind = mod_seq(send_seq - rb.tail) > p.replay_slots
        send_seq_next = Signal(SEQ_BITS)
        m.d.comb += send_seq_next.eq(Mux(replay | behind, rb.tail, send_seq))
        m.d.sync += send_seq.eq(send_seq_next)
        with m.If((tx_hi == rb.tail_next) | rb.progress | replay_now):
            m.d.sync += timer.eq(0)
        with m.Elif(~(s2.valid & s2.data)):
            # Held while a packet is on the wire: a long replay is not cut short by the
            # timer of the packets it is replaying.
            m.d.sync += timer.eq(timer + 1)
        m.d.comb += [self.events.naks_received.eq(rb.nak),
                     self.events.tx_timeouts.eq(timer_fired)]
        return send_seq_next

    def _fill(self, m, rb, s2):
        """Arbitration, then beats into the slot, then the header word."""
        p, geo = self.params, FlitGeometry(self.params)
        W, LW, MAXP = geo.words, geo.lane_bits, p.max_payload_words
        fill_tc = Signal()
        fill_len = Signal(range(MAXP + 1))
        fill_eom = Signal()
        fill_base = Signal(range(p.replay_slots * p.slot_rows))
        mig_streak = Signal(range(p.mig_share + 1))
        fill_rows = geo.stored_rows(fill_len)
        inputs = (self.io_in, self.mig_in)
        # Whole-signal, unconditional assignments: Icarus never evaluates a process whose
        # only drivers are constants, which is what field-wise assignments under a condition
        # can become after Yosys, and the signal would stay X.
        beat = Signal(ChunkBeat)
        m.d.comb += beat.eq(Mux(fill_tc, self.mig_in.payload, self.io_in.payload))
        header = Signal(LinkHeader)
        m.d.comb += header.eq(Cat(Const(FrameKind.DATA, 2), fill_tc, fill_eom, rb.head,
                                  fill_len.as_unsigned()))
        finishing = Signal()
        m.d.comb += [self.spend.eq(finishing), self.spend_tc.eq(fill_tc),
                     self.spend_rows.eq(fill_rows), rb.push.eq(finishing)]

        # Slots as they will be after a FINISH in this cycle (``avail`` counts its credit),
        # so the next packet can start filling right away.
        seq_after = mod_seq(rb.head + finishing)
        slot_bits = p.replay_slots.bit_length() - 1
        slot_busy = s2.valid & s2.data & (s2.seq[:slot_bits] == seq_after[:slot_bits])
        can_start = (mod_seq(seq_after - rb.tail) < p.replay_slots) & ~slot_busy
        io_req = self.io_in.valid & self.avail[TrafficClass.IO]
        mig_req = self.mig_in.valid & self.avail[TrafficClass.MIG]
        pick_mig = mig_req & (~io_req | (mig_streak < p.mig_share))
        start_fill = can_start & (io_req | mig_req)

        def begin_fill():
            with m.If(start_fill):
                m.d.sync += [fill_tc.eq(pick_mig), fill_len.eq(0),
                             fill_base.eq(self.slot_base(seq_after))]
                with m.If(pick_mig):
                    with m.If(mig_streak < p.mig_share):
                        m.d.sync += mig_streak.eq(mig_streak + 1)
                with m.Else():
                    m.d.sync += mig_streak.eq(0)
                m.next = "FILL"

        with m.FSM(name="fill"):
            with m.State("IDLE"):
                begin_fill()
            with m.State("FILL"):
                valid = Mux(fill_tc, self.mig_in.valid, self.io_in.valid)
                for tc, port in enumerate(inputs):
                    m.d.comb += port.ready.eq(fill_tc == tc)
                position = fill_len + 1          # word 0 is the header
                m.d.comb += [rb.wr_addr.eq(fill_base + (position >> LW)),
                             rb.wr_data.eq(beat.data.replicate(W))]
                with m.If(valid):
                    m.d.comb += rb.wr_en.eq(Const(1, W) << position[:LW] if LW else 1)
                    m.d.sync += fill_len.eq(fill_len + 1)
                    with m.If(beat.last | (fill_len == MAXP - 1)):
                        m.d.sync += fill_eom.eq(beat.last)
                        m.next = "FINISH"
            with m.State("FINISH"):
                # wr_en 1: lane 0 only, the header word.
                m.d.comb += [finishing.eq(1), rb.wr_addr.eq(fill_base), rb.wr_en.eq(1),
                             rb.wr_data.eq(header.as_value().replicate(W))]
                m.next = "IDLE"
                begin_fill()

    def _build_flit(self, m, rb, s2):
        """Sender stage 2: this cycle's flit (header from the slot, LCRC computed)."""
        p, geo = self.params, FlitGeometry(self.params)
        W = geo.words
        mem_lanes = geo.lanes(rb.rd_data)
        mem_head = data.View(LinkHeader, mem_lanes[0])
        first_row = s2.row == 0
        s2_length = Signal(range(p.max_payload_words + 1))
        m.d.comb += s2_length.eq(Mux(s2.data, Mux(first_row, mem_head.length, s2.len), 0))
        tx_crc = [Signal(32, name="tx_crc_0")]
        m.d.comb += tx_crc[0].eq(Mux(first_row, CRC32_INIT, s2.crc))
        tx_words = []
        for j in range(W):
            src = Signal(32, name=f"tx_word_{j}")
            if j == 0:
                m.d.comb += src.eq(Mux(s2.data, mem_lanes[0], Mux(first_row, s2.hdr, 0)))
            else:
                m.d.comb += src.eq(Mux(s2.data, mem_lanes[j], 0))
            position = geo.word_pos(s2.row, j)
            payload = position <= s2_length
            tx_crc.append(Signal(32, name=f"tx_crc_{j + 1}"))
            m.d.comb += tx_crc[j + 1].eq(Mux(payload, crc32_word_update(tx_crc[j], src),
                                             tx_crc[j]))
            tx_words.append(Mux(payload, src,
                                Mux(position == s2_length + 1, tx_crc[j] ^ CRC32_XOROUT, 0)))
        m.d.sync += [self.tx.valid.eq(s2.valid), self.tx.sop.eq(s2.valid & first_row),
                     self.tx.flit.eq(Mux(s2.valid, Cat(*tx_words), 0))]
        with m.If(s2.valid):
            m.d.sync += s2.crc.eq(tx_crc[W])
            with m.If(first_row):
                m.d.sync += s2.len.eq(s2_length)
        m.d.comb += self.events.tx_flits.eq(s2.valid)
        return s2.row == geo.last_row(s2_length)

    def _next_frame(self, m, rb, s2, s2_last, send_seq, send_seq_next, tx_hi):
        """Sender stage 1: the next row of this frame, or the next frame (DLLPs first)."""
        slot_rows = self.params.slot_rows
        s2_free = ~s2.valid | s2_last
        next_row = s2.row + 1
        issued = Signal()            # a DATA frame starts
        m.d.comb += [self.dllp.ready.eq(s2_free),
                     self.events.tx_packets.eq(issued & (send_seq_next == tx_hi)),
                     self.events.tx_replays.eq(issued & (send_seq_next != tx_hi))]
        with m.If(~s2_free):
            m.d.sync += s2.row.eq(next_row)
            m.d.comb += [rb.rd_addr.eq(s2.base + Mux(next_row < slot_rows, next_row, 0)),
                         rb.rd_en.eq(s2.data & (next_row < slot_rows))]
        with m.Else():
            m.d.sync += [s2.valid.eq(0), s2.row.eq(0), s2.data.eq(0)]
            with m.If(self.dllp.valid):
                m.d.sync += [s2.valid.eq(1), s2.hdr.eq(self.dllp.payload)]
            with m.Elif(send_seq_next != rb.head):
                m.d.sync += [s2.valid.eq(1), s2.data.eq(1), s2.seq.eq(send_seq_next),
                             s2.base.eq(self.slot_base(send_seq_next)),
                             send_seq.eq(send_seq_next + 1)]
                m.d.comb += [rb.rd_addr.eq(self.slot_base(send_seq_next)), rb.rd_en.eq(1),
                             issued.eq(1)]
                with m.If(send_seq_next == tx_hi):
                    m.d.sync += tx_hi.eq(tx_hi + 1)


__all__ = ["LinkTransmitter", "TRANSMITTER_FAULTS", "TX_EVENTS"]
