"""The receive side of a link port: frame checking (``LinkReceiver``) and the per-class
receive buffer with its read-out (``RxBuffer``)."""

# No ``from __future__ import annotations``: wiring.Component reads the member annotations.
from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from model.link import SEQ_BITS, FrameKind, LinkParams, TrafficClass

from ..crc32 import CRC32_INIT, CRC32_XOROUT
from ..formats import ChunkBeat
from .common import (
    READ_FIFO_DEPTH,
    AckEvent,
    FcEvent,
    FlitGeometry,
    LinkHeader,
    SeqPair,
    check_link_part,
    crc32_word_update,
    mod_seq,
    wire_signature,
)

RECEIVER_FAULTS = ("accept_duplicate",)
RX_EVENTS = data.StructLayout({"rx_packets": 1, "rx_crc_errors": 2, "rx_seq_errors": 1,
                               "rx_duplicates": 1, "rx_overflows": 1})


class LinkReceiver(wiring.Component):
    """Checks the frames of the other port's wire and writes good DATA into the buffers.

    Frames start at a flit with ``sop``; a DATA frame is written into its class's receive
    buffer as it arrives and committed only when its LCRC is good and its sequence number
    is the next expected one, so nothing unchecked is ever delivered.

    Parameters
    ----------
    params : model.link.LinkParams
    _fault_inject : None or ``"accept_duplicate"`` (tests only: a packet behind the
        expected sequence number is committed again).

    Members
    -------
    rx : In(wire_signature(link_width))
        The other port's wire, registered on entry (latency 1 to everything below).
    used : In(ArrayLayout(SEQ_BITS, 2))
        Rows each class's receive buffer holds (``RxBuffer.used``).
    wr_en : Out(2)
        Write enable of each class's buffer, ``wr_row``/``wr_data`` the flit row and flit.
    commit, commit_tc, commit_rows : Out
        A good in-order DATA frame of ``commit_rows`` rows for class ``commit_tc`` ends.
    expected : Out(SEQ_BITS)
        The next sequence number to accept (the last good one is ``expected - 1``).
    ack_request : Out(1)
        An ACK is due: a packet was committed, or a duplicate arrived (its ACK was lost).
    nak_request : Out(1)
        A DATA frame was bad, cut short, or out of order.
    ack : Out(AckEvent)
        A good ACK/NAK DLLP, registered (one cycle after its last flit).
    fc : Out(FcEvent)
        A good FC DLLP ends this cycle.
    events : Out(RX_EVENTS)
        Counter increments: rx_packets, rx_crc_errors (bad LCRC, malformed header or
        cut-short frame; up to 2 per cycle), rx_seq_errors, rx_duplicates, rx_overflows.
    """

    def __init__(self, params: LinkParams, *, _fault_inject: str | None = None):
        check_link_part("LinkReceiver", params, _fault_inject, RECEIVER_FAULTS)
        self.params, self._fault_inject = params, _fault_inject
        # The frame in progress, created here so the formal harness (formal/link_receiver.py)
        # can tie its own copy of the header to it: its k-induction needs that invariant.
        self._f_active = Signal()
        self._f_hdr = Signal(LinkHeader)
        rows = range(params.max_frame_flits + 1)
        super().__init__({
            "rx": In(wire_signature(params.link_width)),
            "used": In(SeqPair),
            "wr_en": Out(2), "wr_row": Out(rows), "wr_data": Out(params.link_width),
            "commit": Out(1), "commit_tc": Out(1), "commit_rows": Out(rows),
            "expected": Out(SEQ_BITS),
            "ack_request": Out(1), "nak_request": Out(1),
            "ack": Out(AckEvent), "fc": Out(FcEvent),
            "events": Out(RX_EVENTS),
        })

    def elaborate(self, platform):
        m = Module()
        p, geo = self.params, FlitGeometry(self.params)
        W, LW = geo.words, geo.lane_bits
        MAX_FLITS = p.max_frame_flits

        r_valid = Signal()
        r_sop = Signal()
        r_flit = Signal(p.link_width)
        m.d.sync += [r_valid.eq(self.rx.valid), r_sop.eq(self.rx.sop),
                     r_flit.eq(self.rx.flit)]
        r_lanes = geo.lanes(r_flit)

        f_active = self._f_active    # inside a frame that started with a good header
        f_row = Signal(range(MAX_FLITS + 1))
        f_hdr = self._f_hdr
        f_crc = Signal(32)
        f_room = Signal()

        start = r_valid & r_sop
        cont = r_valid & ~r_sop & f_active
        cur = Signal(LinkHeader)
        m.d.comb += cur.eq(Mux(start, r_lanes[0], f_hdr))
        row = Signal(range(MAX_FLITS + 1))
        m.d.comb += row.eq(Mux(start, 0, f_row))
        length = cur.length
        kind = cur.kind
        is_data = kind == FrameKind.DATA
        malformed = Mux(is_data, (length == 0) | (length > p.max_payload_words), length != 0)
        in_frame = (start & ~malformed) | cont
        bad_start = start & malformed
        cut_short = start & f_active   # the frame in progress lost its tail

        crc = [Signal(32, name="rx_crc_0")]
        m.d.comb += crc[0].eq(Mux(start, CRC32_INIT, f_crc))
        for j in range(W):
            # Each stage a signal of its own, so the next stage's XOR trees share it.
            absorb = geo.word_pos(row, j) <= length
            crc.append(Signal(32, name=f"rx_crc_{j + 1}"))
            m.d.comb += crc[j + 1].eq(Mux(absorb, crc32_word_update(crc[j], r_lanes[j]),
                                          crc[j]))
        is_last = row == geo.last_row(length)
        crc_ok = Signal()
        if LW:
            with m.Switch((length + 1)[:LW]):
                for k in range(W):
                    with m.Case(k):
                        m.d.comb += crc_ok.eq(r_lanes[k] == (crc[k] ^ CRC32_XOROUT))
        else:
            m.d.comb += crc_ok.eq(r_lanes[0] == (crc[0] ^ CRC32_XOROUT))

        rows = geo.stored_rows(length)
        room_now = Mux(cur.tc, self.used[1], self.used[0]) + rows <= p.rx_buffer_flits
        room = Mux(start, room_now, f_room)
        for tc in TrafficClass:
            m.d.comb += self.wr_en[tc].eq(in_frame & is_data & room & (row < rows)
                                          & (cur.tc == tc))
        m.d.comb += [self.wr_row.eq(row), self.wr_data.eq(r_flit)]

        with m.If(in_frame):
            with m.If(is_last):
                m.d.sync += f_active.eq(0)
            with m.Else():
                m.d.sync += [f_active.eq(1), f_row.eq(row + 1), f_crc.eq(crc[W]),
                             f_hdr.eq(cur), f_room.eq(room)]
        with m.Elif(bad_start):
            m.d.sync += f_active.eq(0)

        good = in_frame & is_last & crc_ok
        bad_end = in_frame & is_last & ~crc_ok
        distance = mod_seq(cur.seq - self.expected)
        in_order = distance == 0
        duplicate = distance[SEQ_BITS - 1]            # behind the expected one
        data_good = good & is_data
        accept = in_order | duplicate if self._fault_inject == "accept_duplicate" else in_order
        commit = data_good & accept & room
        m.d.comb += [
            self.commit.eq(commit), self.commit_tc.eq(cur.tc), self.commit_rows.eq(rows),
            self.ack_request.eq(commit | (data_good & duplicate)),
            self.nak_request.eq((bad_end & is_data) | (bad_start & is_data)
                                | (cut_short & (f_hdr.kind == FrameKind.DATA))
                                | (data_good & ~in_order & ~duplicate)),
            self.fc.valid.eq(good & (kind == FrameKind.FC)),
            self.fc.tc.eq(cur.tc), self.fc.limit.eq(cur.seq),
            self.events.rx_packets.eq(commit),
            self.events.rx_crc_errors.eq(bad_end + bad_start + cut_short),
            self.events.rx_seq_errors.eq(data_good & ~in_order & ~duplicate),
            self.events.rx_duplicates.eq(data_good & duplicate),
            self.events.rx_overflows.eq(data_good & in_order & ~room),
        ]
        m.d.sync += [self.ack.valid.eq(good & ((kind == FrameKind.ACK)
                                               | (kind == FrameKind.NAK))),
                     self.ack.seq.eq(cur.seq), self.ack.nak.eq(kind == FrameKind.NAK)]
        with m.If(commit):
            m.d.sync += self.expected.eq(self.expected + 1)
        return m


class RxBuffer(wiring.Component):
    """One traffic class's receive buffer and its read-out as a ChunkBeat stream.

    Rows are written by ``LinkReceiver`` at ``committed + wr_row`` and become readable when
    ``commit`` adds the packet's rows; the read-out fetches rows ahead into a small FIFO and
    emits one word per cycle. Rows fetched are freed: ``advertised`` (the credit limit the
    other transmitter may fill up to) moves with them.

    Parameters
    ----------
    params : model.link.LinkParams

    Members
    -------
    wr_en, wr_row, wr_data : In
        Write flit ``wr_data`` at row ``wr_row`` of the packet being received.
    commit, commit_rows : In
        The packet being received is good: its ``commit_rows`` rows become readable.
    used : Out(SEQ_BITS)
        Rows committed and not yet fetched.
    advertised : Out(SEQ_BITS)
        Credit limit: rows fetched + buffer rows, modulo 2**SEQ_BITS.
    out : Out(stream of ChunkBeat)
        The committed packets' payload words; ``last`` on the last word of a message
        (its packet with ``eom``). Latency: the first word 3 cycles after ``commit``.
    """

    def __init__(self, params: LinkParams):
        check_link_part("RxBuffer", params, None, ())
        self.params = params
        rows = range(params.max_frame_flits + 1)
        super().__init__({
            "wr_en": In(1), "wr_row": In(rows), "wr_data": In(params.link_width),
            "commit": In(1), "commit_rows": In(rows),
            "used": Out(SEQ_BITS), "advertised": Out(SEQ_BITS),
            "out": Out(stream.Signature(ChunkBeat)),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        rx_bits = p.rx_buffer_flits.bit_length() - 1
        committed = Signal(SEQ_BITS)
        fetched = Signal(SEQ_BITS)
        m.submodules.buffer = mem = Memory(shape=p.link_width, depth=p.rx_buffer_flits, init=[])
        wp = mem.write_port()
        m.d.comb += [wp.en.eq(self.wr_en), wp.addr.eq((committed + self.wr_row)[:rx_bits]),
                     wp.data.eq(self.wr_data)]
        with m.If(self.commit):
            m.d.sync += committed.eq(committed + self.commit_rows)
        m.d.comb += [self.used.eq(mod_seq(committed - fetched)),
                     self.advertised.eq(mod_seq(fetched + p.rx_buffer_flits))]

        rp = mem.read_port()
        m.submodules.read_ahead = fifo = SyncFIFO(width=p.link_width, depth=READ_FIFO_DEPTH)
        in_flight = Signal()
        issue = (fetched != committed) & (fifo.level + in_flight < READ_FIFO_DEPTH)
        m.d.comb += [rp.addr.eq(fetched[:rx_bits]), rp.en.eq(issue),
                     fifo.w_en.eq(in_flight), fifo.w_data.eq(rp.data)]
        m.d.sync += [fetched.eq(fetched + issue), in_flight.eq(issue)]
        self._read_out(m, fifo)
        return m

    def _read_out(self, m: Module, fifo: SyncFIFO) -> None:
        """Cut the fetched rows into payload words: the header word is not emitted."""
        p, geo, out = self.params, FlitGeometry(self.params), self.out
        W, LW, MAXP = geo.words, geo.lane_bits, p.max_payload_words
        pos = Signal(range(MAXP + 2))   # word in the packet
        p_len = Signal(range(MAXP + 1))
        p_eom = Signal()
        row_lanes = geo.lanes(fifo.r_data)
        head = data.View(LinkHeader, row_lanes[0])
        first = pos == 0
        handshake = out.valid & out.ready
        if W == 1:
            # The header has a flit of its own: take it without a beat.
            with m.If(fifo.r_rdy & first):
                m.d.comb += fifo.r_en.eq(1)
                m.d.sync += [p_len.eq(head.length), p_eom.eq(head.eom), pos.eq(1)]
            m.d.comb += [out.valid.eq(fifo.r_rdy & ~first),
                         out.payload.data.eq(row_lanes[0]),
                         out.payload.last.eq(p_eom & (pos == p_len))]
            with m.If(handshake):
                m.d.comb += fifo.r_en.eq(1)
                m.d.sync += pos.eq(Mux(pos == p_len, 0, pos + 1))
            return
        # The header shares the first flit with word 1: emit word 1 in the same cycle, so
        # a packet of L words leaves in L cycles.
        e = Mux(first, 1, pos)
        e_len = Mux(first, head.length, p_len)
        e_eom = Mux(first, head.eom, p_eom)
        word = Signal(32)
        with m.Switch(e[:LW]):
            for k in range(W):
                with m.Case(k):
                    m.d.comb += word.eq(row_lanes[k])
        m.d.comb += [out.valid.eq(fifo.r_rdy), out.payload.data.eq(word),
                     out.payload.last.eq(e_eom & (e == e_len))]
        with m.If(handshake):
            with m.If(first):
                m.d.sync += [p_len.eq(head.length), p_eom.eq(head.eom)]
            with m.If(e == e_len):
                m.d.comb += fifo.r_en.eq(1)
                m.d.sync += pos.eq(0)
            with m.Elif(e[:LW] == W - 1):
                m.d.comb += fifo.r_en.eq(1)
                m.d.sync += pos.eq(e + 1)
            with m.Else():
                m.d.sync += pos.eq(e + 1)


__all__ = ["LinkReceiver", "RxBuffer", "RECEIVER_FAULTS", "RX_EVENTS"]
