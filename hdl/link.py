"""A link port: the data-link layer of one device (DESIGN §3 `link`), PCIe-style.

A link joins two devices with two wires, one per direction; each device has one
``LinkPort`` that drives its TX wire and listens to its RX wire, so one direction of the
link is the transmitter of one port, a wire, and the receiver of the other port. The ACK,
NAK and flow-control DLLPs of a direction travel interleaved with the packets on the
*opposite* wire, as in PCIe: they see the same faults as data (a lost ACK is what the replay
timer is for), and the wire pair is the whole interface between the devices, so a test (or
the system top) can corrupt, drop, duplicate or delay anything that crosses.

Frame format, sequence numbers, LCRC, DLLPs and parameter checks: ``model/link.py`` (the
single source; docs/protocol.md is generated from it).

Transmitter: store-and-forward. Arbitration picks a message stream (TC_IO or TC_MIG) when a
replay slot is free and the receiver's credits cover a maximum packet; the fill copies up
to ``max_payload_words`` beats (one per cycle) into the slot and writes the header word
last (it holds the length). The sender reads slots from the replay buffer, one flit per
cycle, computes the LCRC on the way out, and puts DLLPs first at frame boundaries. Packets
stay in the replay buffer until acknowledged; a NAK or the replay timer restarts sending at
the oldest unacknowledged packet (go-back-N).

Receiver: frames start at a flit with ``sop``; a DATA frame is written into its class's
receive buffer as it arrives and committed only when its LCRC is good and its sequence
number is the next expected one, so nothing unchecked is ever delivered. Committed packets
are read out as ChunkBeat streams; rows read out are returned to the transmitter as
credits (FC DLLPs), per class, so a stalled consumer of one class never blocks the other.
"""

# No ``from __future__ import annotations``: wiring.Component reads the member annotations.
from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from model.link import (
    DEFAULT_MAX_PAYLOAD,
    LINK_HEADER_FIELDS,
    SEQ_BITS,
    STAT_NAMES,
    FrameKind,
    LinkParams,
    TrafficClass,
)

from .crc32 import CRC32_INIT, CRC32_XOROUT, crc32_word_matrix
from .formats import ChunkBeat


def _header_layout() -> data.StructLayout:
    fields, offset = {}, 0
    for name, (lsb, width) in sorted(LINK_HEADER_FIELDS.items(), key=lambda kv: kv[1][0]):
        assert lsb == offset, "model.link.LINK_HEADER_FIELDS must tile the word from bit 0"
        fields[name] = width
        offset += width
    assert offset == 32
    return data.StructLayout(fields)


LinkHeader = _header_layout()
LinkStats = data.StructLayout({name: 32 for name in STAT_NAMES})
READ_FIFO_DEPTH = 4   # rows read ahead per class, so the read-out runs at one word a cycle


def crc32_word_update(crc, word):
    """``hdl.crc32.crc32_word_update`` written as 32 masked parities of the 64 input bits: the
    same logic, about 30 times faster in amaranth.sim than a Cat of bit slices per output."""
    inputs = Cat(crc, word)
    return Cat(*((inputs & mask).xor() for mask in crc32_word_matrix()))


def wire_signature(link_width: int) -> wiring.Signature:
    """One direction of the wire, as seen by its transmitter: ``flit`` is valid when
    ``valid``; ``sop`` marks the first flit of a frame (the framing bit, as PCIe's K-codes
    or sync header). There is no ready: a wire cannot be stalled."""
    return wiring.Signature({"valid": Out(1), "sop": Out(1), "flit": Out(link_width)})


class LinkPort(wiring.Component):
    """Transmitter and receiver of one device's end of the link.

    Parameters (validated by ``model.link.LinkParams``; both ports of a link must match)
    ----------
    link_width : 32, 64, 128 or 256 bits per flit (default 64: two words per flit).
    replay_slots : packets kept until acknowledged (power of two, default 8).
    replay_timeout : cycles without ACK progress, while not sending a packet, before the
        transmitter replays (default 4 maximum frames + 64; at least 2 frames + 16).
    mig_share : TC_MIG packets allowed per TC_IO packet while both wait (default 4), so
        migration cannot starve I/O; an idle class leaves the whole link to the other.
    max_payload_words : words per packet (default 67: one STATE_DATA message of the
        default 64-word chunk); longer messages are cut into several packets.
    rx_buffer_flits : receive buffer rows per class (power of two, at least two maximum
        packets; default: the next power of two of three maximum packets).

    Members
    -------
    io_in, mig_in : In(stream of ChunkBeat)
        Messages to send on TC_IO / TC_MIG; ``last`` ends a message.
    io_out, mig_out : Out(stream of ChunkBeat)
        Messages received from the other port, in order, each exactly once.
    tx : Out(wire_signature(link_width))
        This port's wire (frames and DLLPs), registered.
    rx : In(wire_signature(link_width))
        The other port's wire, registered on entry.
    stats : Out(LinkStats)
        Free-running 32-bit counters: tx_flits, tx_packets (first transmissions),
        tx_replays (packets sent again), tx_timeouts, naks_received, rx_packets (accepted
        in order), rx_crc_errors (bad LCRC, malformed header or cut-short frame),
        rx_seq_errors (sequence gaps), rx_duplicates, naks_sent, rx_overflows (an in-order
        packet without room: a credit violation, never expected).

    Latency (idle link, credits available): the first beat of a message leaves the other
    port's ``*_out`` ``L + F + 6`` cycles after this port accepted its first beat (``+ 7`` at
    ``link_width=32``), plus the wire's own latency; L = words of the message's first
    packet, F = its frame flits (``LinkParams.frame_flits``): the packet is stored, sent,
    checked, then read out at one word per cycle.

    Backpressure: on ``*_out`` it fills that class's receive buffer, whose credits stop the
    other port's transmitter for that class only; ``*_in`` is stalled while no replay slot
    or no credit for a maximum packet is free, and while the other class's packet fills.
    """

    def __init__(self, link_width: int = 64, replay_slots: int = 8,
                 replay_timeout: int | None = None, mig_share: int = 4,
                 max_payload_words: int = DEFAULT_MAX_PAYLOAD,
                 rx_buffer_flits: int | None = None):
        self.params = LinkParams(link_width=link_width, replay_slots=replay_slots,
                                 replay_timeout=replay_timeout, mig_share=mig_share,
                                 max_payload_words=max_payload_words,
                                 rx_buffer_flits=rx_buffer_flits)
        super().__init__({
            "io_in": In(stream.Signature(ChunkBeat)),
            "mig_in": In(stream.Signature(ChunkBeat)),
            "io_out": Out(stream.Signature(ChunkBeat)),
            "mig_out": Out(stream.Signature(ChunkBeat)),
            "tx": Out(wire_signature(link_width)),
            "rx": In(wire_signature(link_width)),
            "stats": Out(LinkStats),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        W = p.words_per_flit
        LW = W.bit_length() - 1
        SLOTS, SLOT_ROWS = p.replay_slots, p.slot_rows
        SLOT_BITS = SLOTS.bit_length() - 1
        DEPTH = SLOTS * SLOT_ROWS
        RXF = p.rx_buffer_flits
        RX_BITS = RXF.bit_length() - 1
        MAXP = p.max_payload_words
        MAX_FLITS = p.max_frame_flits
        SEQ = SEQ_BITS

        def lanes(value):
            return [value[32 * j:32 * j + 32] for j in range(W)]

        def word_pos(row, j):
            return Cat(Const(j, LW), row) if LW else row

        def stored_rows(length):   # ceil((length + 1) / W)
            return (length + W) >> LW

        def mod_seq(value):
            return value[:SEQ]

        def slot_base(seq):
            return seq[:SLOT_BITS] * SLOT_ROWS

        counters = {name: Signal(32, name=f"stat_{name}") for name in STAT_NAMES}
        bumps = {name: [] for name in STAT_NAMES}
        for name in STAT_NAMES:
            m.d.comb += getattr(self.stats, name).eq(counters[name])

        # ================================================================ state shared
        # receiver -> transmitter
        rx_expected = Signal(SEQ)
        ack_pending = Signal()
        nak_pending = Signal()
        nak_scheduled = Signal()
        ack_ev = Signal()            # a good ACK/NAK DLLP arrived (registered)
        ack_ev_seq = Signal(SEQ)
        ack_ev_nak = Signal()
        # per class credits: transmitter view (limit from FC DLLPs, rows consumed) and
        # receiver pointers (rows committed / fetched, cumulative modulo 2**SEQ)
        limit = [Signal(SEQ, name=f"credit_limit_{tc.name.lower()}") for tc in TrafficClass]
        consumed = [Signal(SEQ, name=f"credit_used_{tc.name.lower()}") for tc in TrafficClass]
        committed = [Signal(SEQ, name=f"rx_committed_{tc.name.lower()}") for tc in TrafficClass]
        fetched = [Signal(SEQ, name=f"rx_fetched_{tc.name.lower()}") for tc in TrafficClass]

        # ================================================================ receiver
        r_valid = Signal()
        r_sop = Signal()
        r_flit = Signal(p.link_width)
        m.d.sync += [r_valid.eq(self.rx.valid), r_sop.eq(self.rx.sop),
                     r_flit.eq(self.rx.flit)]
        r_lanes = lanes(r_flit)

        f_active = Signal()          # inside a frame that started with a good header
        f_row = Signal(range(MAX_FLITS + 1))
        f_hdr = Signal(LinkHeader)
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
        malformed = Mux(is_data, (length == 0) | (length > MAXP), length != 0)
        in_frame = (start & ~malformed) | cont
        bad_start = start & malformed
        cut_short = start & f_active   # the frame in progress lost its tail

        crc = [Signal(32, name="rx_crc_0")]
        m.d.comb += crc[0].eq(Mux(start, CRC32_INIT, f_crc))
        for j in range(W):
            # Each stage a signal of its own, so the next stage's XOR trees share it.
            absorb = word_pos(row, j) <= length
            crc.append(Signal(32, name=f"rx_crc_{j + 1}"))
            m.d.comb += crc[j + 1].eq(Mux(absorb, crc32_word_update(crc[j], r_lanes[j]),
                                          crc[j]))
        last_row = (length + 1) >> LW
        is_last = row == last_row
        crc_ok = Signal()
        if LW:
            with m.Switch((length + 1)[:LW]):
                for k in range(W):
                    with m.Case(k):
                        m.d.comb += crc_ok.eq(r_lanes[k] == (crc[k] ^ CRC32_XOROUT))
        else:
            m.d.comb += crc_ok.eq(r_lanes[0] == (crc[0] ^ CRC32_XOROUT))

        used = [mod_seq(committed[tc] - fetched[tc]) for tc in TrafficClass]
        rows = stored_rows(length)
        room_now = Mux(cur.tc, used[1], used[0]) + rows <= RXF
        room = Mux(start, room_now, f_room)

        rx_mems = []
        for tc in TrafficClass:
            mem = Memory(shape=p.link_width, depth=RXF, init=[])
            m.submodules[f"rx_buffer_{tc.name.lower()}"] = mem
            wp = mem.write_port()
            m.d.comb += [
                wp.en.eq(in_frame & is_data & room & (row < rows) & (cur.tc == tc)),
                wp.addr.eq((committed[tc] + row)[:RX_BITS]),
                wp.data.eq(r_flit),
            ]
            rx_mems.append(mem)

        with m.If(in_frame):
            with m.If(is_last):
                m.d.sync += f_active.eq(0)
            with m.Else():
                m.d.sync += [f_active.eq(1), f_row.eq(row + 1), f_crc.eq(crc[W]),
                             f_hdr.eq(cur), f_room.eq(room)]
        with m.Elif(bad_start):
            m.d.sync += f_active.eq(0)

        end = in_frame & is_last
        good = end & crc_ok
        bad_end = end & ~crc_ok
        distance = mod_seq(cur.seq - rx_expected)
        in_order = distance == 0
        duplicate = distance[SEQ - 1]            # behind the expected one
        data_good = good & is_data
        commit = data_good & in_order & room
        nak_request = ((bad_end & is_data) | (bad_start & is_data)
                       | (cut_short & (f_hdr.kind == FrameKind.DATA))
                       | (data_good & ~in_order & ~duplicate))

        # ================================================================ read-out
        fc_advertised = []
        for tc, out in ((TrafficClass.IO, self.io_out), (TrafficClass.MIG, self.mig_out)):
            name = tc.name.lower()
            rp = rx_mems[tc].read_port()
            fifo = SyncFIFO(width=p.link_width, depth=READ_FIFO_DEPTH)
            m.submodules[f"read_ahead_{name}"] = fifo
            in_flight = Signal(name=f"read_in_flight_{name}")
            issue = (fetched[tc] != committed[tc]) & (fifo.level + in_flight < READ_FIFO_DEPTH)
            m.d.comb += [rp.addr.eq(fetched[tc][:RX_BITS]), rp.en.eq(issue),
                         fifo.w_en.eq(in_flight), fifo.w_data.eq(rp.data)]
            m.d.sync += [fetched[tc].eq(fetched[tc] + issue), in_flight.eq(issue)]
            fc_advertised.append(mod_seq(fetched[tc] + RXF))

            pos = Signal(range(MAXP + 2), name=f"read_pos_{name}")   # word in the packet
            p_len = Signal(range(MAXP + 1), name=f"read_len_{name}")
            p_eom = Signal(name=f"read_eom_{name}")
            row_lanes = lanes(fifo.r_data)
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
            else:
                # The header shares the first flit with word 1: emit word 1 in the same
                # cycle, so a packet of L words leaves in L cycles.
                e = Mux(first, 1, pos)
                e_len = Mux(first, head.length, p_len)
                e_eom = Mux(first, head.eom, p_eom)
                word = Signal(32, name=f"read_word_{name}")
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

        # ================================================================ transmitter
        replay = Memory(shape=p.link_width, depth=DEPTH, init=[])
        m.submodules.replay_buffer = replay
        wp = replay.write_port(granularity=32)
        rp = replay.read_port()

        fill_seq = Signal(SEQ)
        send_seq = Signal(SEQ)       # next packet to send (goes back on a replay)
        ack_seq = Signal(SEQ)        # oldest unacknowledged packet
        tx_hi = Signal(SEQ)          # one past the newest packet ever sent

        # -- sender stage 2 registers: the frame whose flit is built this cycle
        s2_valid = Signal()
        s2_data = Signal()           # DATA frame from the replay buffer (else a DLLP)
        s2_row = Signal(range(MAX_FLITS + 1))
        s2_seq = Signal(SEQ)
        s2_base = Signal(range(DEPTH))
        s2_len = Signal(range(MAXP + 1))
        s2_hdr = Signal(32)
        s2_crc = Signal(32)

        # -- ACK / NAK and the replay decision
        acked_through = mod_seq(ack_ev_seq + 1)
        ack_distance = mod_seq(acked_through - ack_seq)
        ack_ok = ack_ev & (ack_distance <= mod_seq(tx_hi - ack_seq))
        ack_next = Mux(ack_ok, acked_through, ack_seq)
        progress = ack_ok & (ack_distance != 0)
        timer = Signal(range(p.replay_timeout + 1))
        timer_fired = timer >= p.replay_timeout
        replay_now = (ack_ok & ack_ev_nak) | timer_fired
        behind = mod_seq(send_seq - ack_next) > SLOTS
        send_seq_next = Signal(SEQ)
        m.d.comb += send_seq_next.eq(Mux(replay_now | behind, ack_next, send_seq))
        m.d.sync += [ack_seq.eq(ack_next), send_seq.eq(send_seq_next)]
        with m.If((tx_hi == ack_next) | progress | replay_now):
            m.d.sync += timer.eq(0)
        with m.Elif(~(s2_valid & s2_data)):
            # Held while a packet is on the wire: a long replay is not cut short by the
            # timer of the packets it is replaying.
            m.d.sync += timer.eq(timer + 1)
        bumps["naks_received"].append(ack_ok & ack_ev_nak)
        bumps["tx_timeouts"].append(timer_fired)

        # -- fill: arbitration, then beats into the slot, then the header word
        fill_tc = Signal()
        fill_len = Signal(range(MAXP + 1))
        fill_eom = Signal()
        fill_base = Signal(range(DEPTH))
        mig_streak = Signal(range(p.mig_share + 1))
        fill_rows = stored_rows(fill_len)
        inputs = (self.io_in, self.mig_in)
        # Whole-signal, unconditional assignments: Icarus never evaluates a process whose
        # only drivers are constants, which is what field-wise assignments under a condition
        # can become after Yosys, and the signal would stay X.
        beat = Signal(ChunkBeat)
        m.d.comb += beat.eq(Mux(fill_tc, self.mig_in.payload, self.io_in.payload))
        header = Signal(LinkHeader)
        m.d.comb += header.eq(Cat(Const(FrameKind.DATA, 2), fill_tc, fill_eom, fill_seq,
                                  fill_len.as_unsigned()))

        with m.FSM(name="fill"):
            finishing = Signal()
            # Credits and slots as they will be after a FINISH in this cycle, so the next
            # packet can start filling right away.
            seq_after = mod_seq(fill_seq + finishing)
            avail_ok = []
            for tc in TrafficClass:
                spent = consumed[tc] + Mux(finishing & (fill_tc == tc), fill_rows, 0)
                avail_ok.append(mod_seq(limit[tc] - spent) >= SLOT_ROWS)
            slot_busy = s2_valid & s2_data & (s2_seq[:SLOT_BITS] == seq_after[:SLOT_BITS])
            can_start = (mod_seq(seq_after - ack_seq) < SLOTS) & ~slot_busy
            io_req = self.io_in.valid & avail_ok[TrafficClass.IO]
            mig_req = self.mig_in.valid & avail_ok[TrafficClass.MIG]
            pick_mig = mig_req & (~io_req | (mig_streak < p.mig_share))
            start_fill = can_start & (io_req | mig_req)

            def begin_fill():
                with m.If(start_fill):
                    m.d.sync += [fill_tc.eq(pick_mig), fill_len.eq(0),
                                 fill_base.eq(slot_base(seq_after))]
                    with m.If(pick_mig):
                        with m.If(mig_streak < p.mig_share):
                            m.d.sync += mig_streak.eq(mig_streak + 1)
                    with m.Else():
                        m.d.sync += mig_streak.eq(0)
                    m.next = "FILL"

            with m.State("IDLE"):
                begin_fill()
            with m.State("FILL"):
                valid = Mux(fill_tc, self.mig_in.valid, self.io_in.valid)
                for tc, port in enumerate(inputs):
                    m.d.comb += port.ready.eq(fill_tc == tc)
                position = fill_len + 1          # word 0 is the header
                m.d.comb += [wp.addr.eq(fill_base + (position >> LW)),
                             wp.data.eq(beat.data.replicate(W))]
                with m.If(valid):
                    m.d.comb += wp.en.eq(Const(1, W) << position[:LW] if LW else 1)
                    m.d.sync += fill_len.eq(fill_len + 1)
                    with m.If(beat.last | (fill_len == MAXP - 1)):
                        m.d.sync += fill_eom.eq(beat.last)
                        m.next = "FINISH"
            with m.State("FINISH"):
                m.d.comb += [finishing.eq(1), wp.addr.eq(fill_base), wp.en.eq(1),
                             wp.data.eq(header.as_value().replicate(W))]
                m.d.sync += fill_seq.eq(fill_seq + 1)
                for tc in TrafficClass:
                    with m.If(fill_tc == tc):
                        m.d.sync += consumed[tc].eq(consumed[tc] + fill_rows)
                m.next = "IDLE"
                begin_fill()

        # -- sender stage 2: build this cycle's flit (header from the slot, LCRC computed)
        mem_lanes = lanes(rp.data)
        mem_head = data.View(LinkHeader, mem_lanes[0])
        first_row = s2_row == 0
        s2_length = Signal(range(MAXP + 1))
        m.d.comb += s2_length.eq(Mux(s2_data, Mux(first_row, mem_head.length, s2_len), 0))
        tx_crc = [Signal(32, name="tx_crc_0")]
        m.d.comb += tx_crc[0].eq(Mux(first_row, CRC32_INIT, s2_crc))
        tx_words = []
        for j in range(W):
            src = Signal(32, name=f"tx_word_{j}")
            if j == 0:
                m.d.comb += src.eq(Mux(s2_data, mem_lanes[0], Mux(first_row, s2_hdr, 0)))
            else:
                m.d.comb += src.eq(Mux(s2_data, mem_lanes[j], 0))
            position = word_pos(s2_row, j)
            payload = position <= s2_length
            tx_crc.append(Signal(32, name=f"tx_crc_{j + 1}"))
            m.d.comb += tx_crc[j + 1].eq(Mux(payload, crc32_word_update(tx_crc[j], src),
                                             tx_crc[j]))
            tx_words.append(Mux(payload, src,
                                Mux(position == s2_length + 1, tx_crc[j] ^ CRC32_XOROUT, 0)))
        s2_last = s2_row == ((s2_length + 1) >> LW)
        m.d.sync += [self.tx.valid.eq(s2_valid), self.tx.sop.eq(s2_valid & first_row),
                     self.tx.flit.eq(Mux(s2_valid, Cat(*tx_words), 0))]
        with m.If(s2_valid):
            m.d.sync += s2_crc.eq(tx_crc[W])
            with m.If(first_row):
                m.d.sync += s2_len.eq(s2_length)
        bumps["tx_flits"].append(s2_valid)

        # -- sender stage 1: next row of this frame, or the next frame (DLLPs first)
        s2_free = ~s2_valid | s2_last
        last_good = mod_seq(rx_expected - 1)
        fc_sent = [Signal(SEQ, name=f"fc_sent_{tc.name.lower()}") for tc in TrafficClass]
        fc_due = [Signal(init=1, name=f"fc_due_{tc.name.lower()}") for tc in TrafficClass]
        fc_pending = [fc_due[tc] | (mod_seq(fc_advertised[tc] - fc_sent[tc]) >= p.fc_threshold)
                      for tc in TrafficClass]
        # The DLLP the sender would start now (priority NAK, ACK, FC of IO, FC of MIG).
        acking = nak_pending | ack_pending
        fc_tc = ~fc_pending[TrafficClass.IO]
        dllp = Signal(LinkHeader)
        m.d.comb += dllp.eq(Cat(
            Mux(nak_pending, FrameKind.NAK, Mux(ack_pending, FrameKind.ACK, FrameKind.FC)),
            ~acking & fc_tc, Const(0, 1),
            Mux(acking, last_good, Mux(fc_tc, fc_advertised[1], fc_advertised[0])),
            Const(0, 16)))
        fc_timer = Signal(range(p.fc_refresh))
        with m.If(fc_timer == p.fc_refresh - 1):
            # Credit limits are absolute, so repeating them repairs any lost FC DLLP.
            m.d.sync += [fc_timer.eq(0), *(due.eq(1) for due in fc_due)]
        with m.Else():
            m.d.sync += fc_timer.eq(fc_timer + 1)

        next_row = s2_row + 1
        nak_sent = Signal()
        issued = Signal()            # a DATA frame starts
        bumps["naks_sent"].append(nak_sent)
        bumps["tx_packets"].append(issued & (send_seq_next == tx_hi))
        bumps["tx_replays"].append(issued & (send_seq_next != tx_hi))
        with m.If(~s2_free):
            m.d.sync += s2_row.eq(next_row)
            m.d.comb += [rp.addr.eq(s2_base + Mux(next_row < SLOT_ROWS, next_row, 0)),
                         rp.en.eq(s2_data & (next_row < SLOT_ROWS))]
        with m.Else():
            m.d.sync += [s2_valid.eq(0), s2_row.eq(0), s2_data.eq(0)]
            send_dllp = Signal()
            with m.If(nak_pending):
                m.d.comb += [send_dllp.eq(1), nak_sent.eq(1)]
                m.d.sync += [nak_pending.eq(0), ack_pending.eq(0)]
            with m.Elif(ack_pending):
                m.d.comb += send_dllp.eq(1)
                m.d.sync += ack_pending.eq(0)
            for tc in TrafficClass:
                with m.Elif(fc_pending[tc]):
                    m.d.comb += send_dllp.eq(1)
                    m.d.sync += [fc_sent[tc].eq(fc_advertised[tc]), fc_due[tc].eq(0)]
            with m.Elif(send_seq_next != fill_seq):
                m.d.sync += [s2_valid.eq(1), s2_data.eq(1), s2_seq.eq(send_seq_next),
                             s2_base.eq(slot_base(send_seq_next)),
                             send_seq.eq(send_seq_next + 1)]
                m.d.comb += [rp.addr.eq(slot_base(send_seq_next)), rp.en.eq(1)]
                m.d.comb += issued.eq(1)
                with m.If(send_seq_next == tx_hi):
                    m.d.sync += tx_hi.eq(tx_hi + 1)
            with m.If(send_dllp):
                m.d.sync += [s2_valid.eq(1), s2_hdr.eq(dllp.as_value())]

        # ================================================================ receiver actions
        # (after the sender's statements: a flag set here in the cycle the sender clears it
        # stays set, so no ACK or NAK request is lost)
        m.d.sync += [ack_ev.eq(good & ((kind == FrameKind.ACK) | (kind == FrameKind.NAK))),
                     ack_ev_seq.eq(cur.seq), ack_ev_nak.eq(kind == FrameKind.NAK)]
        with m.If(nak_request & ~nak_scheduled):
            m.d.sync += [nak_pending.eq(1), nak_scheduled.eq(1)]
        with m.If(data_good & duplicate):
            m.d.sync += ack_pending.eq(1)        # the ACK may have been lost: repeat it
        with m.If(commit):
            m.d.sync += [rx_expected.eq(rx_expected + 1), ack_pending.eq(1),
                         nak_pending.eq(0), nak_scheduled.eq(0)]
            for tc in TrafficClass:
                with m.If(cur.tc == tc):
                    m.d.sync += committed[tc].eq(committed[tc] + rows)
        with m.If(good & (kind == FrameKind.FC)):
            for tc in TrafficClass:
                # Ignore a limit below what was already spent (a stale or foreign value).
                with m.If((cur.tc == tc) & (mod_seq(cur.seq - consumed[tc]) <= RXF)):
                    m.d.sync += limit[tc].eq(cur.seq)
        bumps["rx_packets"].append(commit)
        bumps["rx_crc_errors"] += [bad_end, bad_start, cut_short]
        bumps["rx_seq_errors"].append(data_good & ~in_order & ~duplicate)
        bumps["rx_duplicates"].append(data_good & duplicate)
        bumps["rx_overflows"].append(data_good & in_order & ~room)

        for name, terms in bumps.items():
            if terms:
                m.d.sync += counters[name].eq(counters[name] + sum(terms))
        return m


__all__ = ["LinkPort", "LinkHeader", "LinkStats", "wire_signature"]
