"""VF Migration protocol codec (transaction layer, docs/design.md): decoder and encoder.

A message on the wire is a ``ChunkBeat`` stream (``model/protocol.py``): header word, arg
word, ``length`` payload words, and for STATE_DATA the CRC-32 of the payload; ``last`` on
the final word.  Both blocks here carry a message's header as one ``message_header_layout``
record — the header word's fields at the model's bit positions (``HEADER_FIELDS``), then
``arg`` — so the record's low 32 bits *are* the header word, and its payload words as a
separate stream.

What a receiver refuses, and which reason it reports, is ``model.protocol_vectors.classify``
(``Malformed``); ``tests/vectors/protocol_vectors.json`` holds the shared bit-exact vectors.
"""

# No ``from __future__ import annotations``: wiring.Component reads the member annotations.
from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from model.common import bits_for, check_int
from model.protocol import HEADER_FIELDS, MAX_VFS, MsgType, Reason
from model.protocol_vectors import Malformed, payload_bounds, trailer_words

from .crc32 import CRC32_INIT, CRC32_XOROUT, crc32_word_update
from .formats import ChunkBeat

HEADER_QUEUE_DEPTH = 4  # decoded headers waiting for the consumer
_SKID_DEPTH = 4         # payload words read out of the buffer ahead of the consumer


def header_word_layout() -> data.StructLayout:
    """Header word 0 as a StructLayout, built from ``model.protocol.HEADER_FIELDS``."""
    fields = sorted(HEADER_FIELDS.items(), key=lambda item: item[1][0])
    position = 0
    for name, (lsb, width) in fields:
        if lsb != position:
            raise ValueError(f"model.protocol.HEADER_FIELDS must tile the header word: "
                             f"field {name} starts at bit {lsb}, not {position}")
        position += width
    if position != 32:
        raise ValueError(f"model.protocol.HEADER_FIELDS cover {position} bits, not 32")
    return data.StructLayout({name: width for name, (_, width) in fields})


def message_header_layout() -> data.StructLayout:
    """A message's header record: the header word's fields (bits 31:0), then ``arg``."""
    fields = {name: field.shape for name, field in header_word_layout()}
    return data.StructLayout({**fields, "arg": 32})


def malformed_event_layout() -> data.StructLayout:
    """``MigProtoDecoder.malformed``: ``valid`` is high for one cycle per dropped message;
    ``type`` and ``vf`` are the dropped header word's fields, whatever they held."""
    return data.StructLayout({"valid": 1, "reason": bits_for(len(Malformed)),
                              "type": HEADER_FIELDS["type"][1], "vf": HEADER_FIELDS["vf"][1]})


def _payload_length_ok(m: Module, header, max_chunk_words: int) -> Signal:
    """The header's length is one the model allows for its type (``payload_bounds``)."""
    ok = Signal()
    with m.Switch(header.type):
        for type_ in MsgType:
            lo, hi = payload_bounds(type_, max_chunk_words)
            with m.Case(int(type_)):
                # (no `length >= 0`: a comparison that is always true is a lint warning)
                m.d.comb += ok.eq(header.length == lo if lo == hi else
                                  ((header.length >= lo) if lo else 1) & (header.length <= hi))
    return ok


class MigProtoDecoder(wiring.Component):
    """Receives raw protocol messages, checks them and hands out the well-formed ones.

    Store and forward: a message is forwarded only after its ``last`` beat proved it well
    formed (``model.protocol_vectors.classify``), so a malformed one — unknown type or
    reason, a length its type never carries, a VF id ``>= n_vfs``, ``last`` before or after
    the declared length, a STATE_DATA CRC mismatch — is consumed to its ``last`` beat and
    dropped entirely: nothing of it reaches ``header``/``payload``.  Each drop raises one
    ``malformed`` event and counts in ``counts``.  The payload buffer holds two maximum
    messages by default, so the next message is received while the previous one drains.

    Parameters
    ----------
    n_vfs : int
        VF ids ``0 … n_vfs - 1`` are accepted (1 … ``model.protocol.MAX_VFS``).
    max_chunk_words : int
        Longest STATE_DATA payload accepted (1 … 65535); the engine's is
        ``max(chunk_words, block_words, meta_words)``, the DMA's ``max_chunk_words``.
    buffer_words : int or None
        Payload buffer, a power of two ``>= max_chunk_words + 1``; default the power of two
        ``>= 2 * (max_chunk_words + 1)`` (receive one message while the last drains).
    counter_bits : int
        Width of each saturating counter in ``counts`` (1 … 64).

    Members
    -------
    rx : In(stream.Signature(ChunkBeat))
        Messages as received from the link.  ``ready`` falls only while the payload buffer
        or the header queue (``HEADER_QUEUE_DEPTH``) is full; it never depends on
        ``valid`` or the payload.
    header : Out(stream.Signature(message_header_layout()))
        One record per well-formed message: ``type``, ``reason``, ``vf``, ``length``,
        ``arg``.  Valid the cycle after the message's ``last`` beat was accepted (when
        nothing is queued ahead), never while the previous message's payload is still
        being taken.
    payload : Out(stream.Signature(ChunkBeat))
        After the header of a message that has payload words, exactly the words that
        followed ``arg`` on the wire: ``length`` payload words and, for STATE_DATA, the
        CRC word — ``last`` on the final one.  This is the DMA write side's chunk format,
        so the engine can hand it to ``wr_data`` unchanged (the DMA re-checks the CRC end to
        end).  The first word is valid 3 cycles after the message's ``last`` beat at the
        earliest; then one word per cycle.  Backpressure here fills the buffer, then
        stalls ``rx``; nothing is ever lost.
    malformed : Out(malformed_event_layout())
        An event (``valid`` for one cycle, no handshake) in the cycle a malformed
        message's ``last`` beat is accepted: its ``Malformed`` reason (the lowest code that
        applies) and its header word's type and vf fields.
    unexpected : In(1)
        The consumer's one-cycle pulse for a well-formed message that is wrong in its
        protocol state ("message in the wrong protocol state" is the engine's to judge);
        counted as ``Malformed.UNEXPECTED``, no event.
    counts : Out(data.ArrayLayout(counter_bits, len(Malformed)))
        Saturating counters indexed by ``Malformed`` code; ``counts[Malformed.NONE]`` is
        the total of all the others (every drop and every ``unexpected`` pulse). A count
        follows its event by one cycle (the events are registered before the adders).
    """

    def __init__(self, n_vfs: int, max_chunk_words: int, buffer_words: int | None = None,
                 counter_bits: int = 16):
        check_int("MigProtoDecoder", "n_vfs", n_vfs, 1, MAX_VFS)
        max_length = (1 << HEADER_FIELDS["length"][1]) - 1
        check_int("MigProtoDecoder", "max_chunk_words", max_chunk_words, 1, max_length)
        if buffer_words is None:
            buffer_words = 1 << (2 * (max_chunk_words + 1) - 1).bit_length()
        check_int("MigProtoDecoder", "buffer_words", buffer_words, max_chunk_words + 1, 1 << 20)
        if buffer_words & (buffer_words - 1):
            raise ValueError(f"MigProtoDecoder buffer_words must be a power of two, "
                             f"not {buffer_words}")
        check_int("MigProtoDecoder", "counter_bits", counter_bits, 1, 64)
        self.n_vfs, self.max_chunk_words = n_vfs, max_chunk_words
        self.buffer_words, self.counter_bits = buffer_words, counter_bits
        super().__init__({
            "rx": In(stream.Signature(ChunkBeat)),
            "header": Out(stream.Signature(message_header_layout())),
            "payload": Out(stream.Signature(ChunkBeat)),
            "malformed": Out(malformed_event_layout()),
            "unexpected": In(1),
            "counts": Out(data.ArrayLayout(counter_bits, len(Malformed))),
        })

    def elaborate(self, platform):
        m = Module()
        depth = self.buffer_words
        addr_bits = depth.bit_length() - 1
        ptr_bits = addr_bits + 1  # one more bit tells a full buffer from an empty one

        word = self.rx.payload.data
        last = self.rx.payload.last
        head, head_error = self._check_header(m, word)
        hdr = Signal(header_word_layout())   # word 0 of the message being received
        arg = Signal(32)
        error = Signal(Malformed)            # the reason its drop will report
        is_state_data = hdr.type == MsgType.STATE_DATA
        stored_left = Signal(HEADER_FIELDS["length"][1] + 1)  # words after arg still due
        crc = Signal(32)

        # ---- payload buffer: written speculatively, published on a good message's last
        # beat (``committed``), rewound on a malformed one.
        buffer = m.submodules.buffer = Memory(shape=ChunkBeat, depth=depth, init=[])
        wr = buffer.write_port()
        rd = buffer.read_port(domain="sync")
        write_ptr = Signal(ptr_bits)
        committed = Signal(ptr_bits)
        read_ptr = Signal(ptr_bits)
        buffer_full = Signal()
        m.d.comb += [buffer_full.eq((write_ptr - read_ptr)[:ptr_bits] == depth),
                     wr.addr.eq(write_ptr[:addr_bits]), wr.data.eq(self.rx.payload)]

        headers = m.submodules.headers = fifo.SyncFIFO(
            width=message_header_layout().size, depth=HEADER_QUEUE_DEPTH)

        accepted = self.rx.valid & self.rx.ready
        drop = Signal()
        drop_reason = Signal(Malformed)
        drop_header = Signal(header_word_layout())
        m.d.comb += drop_header.eq(hdr)

        def drop_with(reason):
            m.d.comb += [drop.eq(1), drop_reason.eq(reason)]
            m.d.sync += write_ptr.eq(committed)
            m.next = "HEAD"

        def commit(arg_value, ptr_after):
            m.d.comb += [headers.w_en.eq(1), headers.w_data.eq(Cat(hdr, arg_value))]
            m.d.sync += [write_ptr.eq(ptr_after), committed.eq(ptr_after)]
            m.next = "HEAD"

        with m.FSM(name="receive"):
            with m.State("HEAD"):
                # A one-word message is always malformed, so nothing is committed here.
                m.d.comb += [self.rx.ready.eq(1), drop_header.eq(head)]
                with m.If(accepted):
                    m.d.sync += [hdr.eq(head), error.eq(head_error), crc.eq(CRC32_INIT),
                                 stored_left.eq(head.length + Mux(
                                     head.type == MsgType.STATE_DATA,
                                     trailer_words(MsgType.STATE_DATA), 0))]
                    with m.If(last):
                        drop_with(Mux(head_error != Malformed.NONE, head_error,
                                       Malformed.FRAMING))
                    with m.Else():
                        m.next = "ARG"
            with m.State("ARG"):
                m.d.comb += self.rx.ready.eq(headers.w_rdy)
                with m.If(accepted):
                    m.d.sync += arg.eq(word)
                    with m.If(error != Malformed.NONE):
                        with m.If(last):
                            drop_with(error)
                        with m.Else():
                            m.next = "DISCARD"
                    with m.Elif(last):
                        with m.If(stored_left == 0):
                            commit(word, write_ptr)
                        with m.Else():
                            drop_with(Malformed.FRAMING)
                    with m.Elif(stored_left == 0):
                        m.d.sync += error.eq(Malformed.FRAMING)
                        m.next = "DISCARD"
                    with m.Else():
                        m.next = "BODY"
            with m.State("BODY"):
                m.d.comb += [self.rx.ready.eq(headers.w_rdy & ~buffer_full),
                             wr.en.eq(accepted)]
                final = stored_left == 1
                with m.If(accepted):
                    m.d.sync += [write_ptr.eq(write_ptr + 1), stored_left.eq(stored_left - 1)]
                    with m.If(~(final & is_state_data)):  # the CRC word is not its own input
                        m.d.sync += crc.eq(crc32_word_update(crc, word))
                    with m.If(final & last):
                        with m.If(is_state_data & (word != (crc ^ CRC32_XOROUT))):
                            drop_with(Malformed.CRC)
                        with m.Else():
                            commit(arg, write_ptr + 1)
                    with m.Elif(final):
                        m.d.sync += error.eq(Malformed.FRAMING)
                        m.next = "DISCARD"
                    with m.Elif(last):
                        drop_with(Malformed.FRAMING)
            with m.State("DISCARD"):
                m.d.comb += self.rx.ready.eq(1)
                with m.If(accepted & last):
                    drop_with(error)

        m.d.comb += [self.malformed.valid.eq(drop), self.malformed.reason.eq(drop_reason),
                     self.malformed.type.eq(drop_header.type),
                     self.malformed.vf.eq(drop_header.vf)]

        self._count_drops(m, drop, drop_reason)
        self._read_out(m, rd, committed, read_ptr, headers, addr_bits)
        return m

    def _check_header(self, m, word):
        """The header checks on the beat being received (word 0 in state HEAD); returns
        the header view and the first reason it is malformed (``Malformed.NONE``)."""
        head = Signal(header_word_layout())
        m.d.comb += head.eq(word)
        length_ok = _payload_length_ok(m, head, self.max_chunk_words)
        head_error = Signal(Malformed)
        with m.If(~head.type.matches(*(int(t) for t in MsgType))):
            m.d.comb += head_error.eq(Malformed.TYPE)
        with m.Elif(~head.reason.matches(*(int(r) for r in Reason))):
            m.d.comb += head_error.eq(Malformed.REASON)
        with m.Elif(~length_ok):
            m.d.comb += head_error.eq(Malformed.LENGTH)
        with m.Elif(head.vf >= self.n_vfs):
            m.d.comb += head_error.eq(Malformed.VF)

        return head, head_error

    def _count_drops(self, m, drop, drop_reason):
        """Saturating counters per drop reason; ``NONE`` counts every drop and every
        ``unexpected`` pulse."""
        # The events are registered first: a drop is decided at the end of a long path
        # (the receive buffer's read-ahead, the message's length and CRC checks), and the
        # counters' adders after it were the 8-VF board's critical path. The counts follow
        # their events a cycle later.
        drop_r, unexpected_r = Signal(), Signal()
        reason_r = Signal(Malformed)
        m.d.sync += [drop_r.eq(drop), reason_r.eq(drop_reason),
                     unexpected_r.eq(self.unexpected)]
        drop, drop_reason = drop_r, reason_r
        saturated = (1 << self.counter_bits) - 1
        total = self.counts[Malformed.NONE]
        events = Signal(2)
        m.d.comb += events.eq(drop + unexpected_r)
        with m.If(total + events > saturated):
            m.d.sync += total.eq(saturated)
        with m.Else():
            m.d.sync += total.eq(total + events)
        for reason in Malformed:
            if reason == Malformed.NONE:
                continue
            hit = drop & (drop_reason == reason)
            if reason == Malformed.UNEXPECTED:
                hit = hit | unexpected_r
            count = self.counts[reason]
            with m.If(hit & (count != saturated)):
                m.d.sync += count.eq(count + 1)


    def _read_out(self, m, rd, committed, read_ptr, headers, addr_bits):
        """Read side: buffer -> skid queue (one read in flight) -> payload stream, each
        message's header first."""
        skid = m.submodules.skid = fifo.SyncFIFO(width=data.Layout.cast(ChunkBeat).size,
                                                 depth=_SKID_DEPTH)
        in_flight = Signal()
        issue = Signal()
        m.d.comb += [issue.eq((read_ptr != committed) & (skid.level + in_flight < _SKID_DEPTH)),
                     rd.addr.eq(read_ptr[:addr_bits]), rd.en.eq(issue),
                     skid.w_en.eq(in_flight), skid.w_data.eq(rd.data)]
        m.d.sync += in_flight.eq(issue)
        with m.If(issue):
            m.d.sync += read_ptr.eq(read_ptr + 1)

        payload_open = Signal()  # the header was taken, its payload words are not all out
        out_header = Signal(message_header_layout())
        m.d.comb += [
            out_header.eq(headers.r_data),
            self.header.valid.eq(headers.r_rdy & ~payload_open),
            self.header.payload.eq(out_header),
            headers.r_en.eq(self.header.valid & self.header.ready),
            self.payload.valid.eq(skid.r_rdy & payload_open),
            self.payload.payload.eq(skid.r_data),
            skid.r_en.eq(self.payload.valid & self.payload.ready),
        ]
        with m.If(self.header.valid & self.header.ready):
            m.d.sync += payload_open.eq((out_header.length != 0)
                                        | (out_header.type == MsgType.STATE_DATA))
        with m.If(self.payload.valid & self.payload.ready & self.payload.payload.last):
            m.d.sync += payload_open.eq(0)


class MigProtoEncoder(wiring.Component):
    """Frames a message from its header record and payload words (``Message.to_words``).

    Any header is framed as given (the encoder checks nothing: the model encodes whatever
    ``Message`` holds); ``length`` payload words are taken from ``payload`` and, for
    STATE_DATA, the CRC-32 of those words follows as the final beat.

    Members
    -------
    header : In(stream.Signature(message_header_layout()))
        The message's ``type``, ``reason``, ``vf``, ``length`` (payload words) and ``arg``.
        Taken in the cycle its header word leaves on ``tx`` (latency 0: the header word is
        a combinational view of the record, ``header.ready`` follows ``tx.ready``).
    payload : In(stream.Signature(32))
        Exactly ``length`` words per message, after its header; each passes to ``tx`` in
        the cycle it is offered (``payload.ready`` follows ``tx.ready``).
    tx : Out(stream.Signature(ChunkBeat))
        Header word, arg, payload words, [CRC]: one beat per cycle while ``header`` and
        ``payload`` keep up, with no idle cycle between messages; ``last`` on the final
        beat.  Backpressure on ``tx`` stalls ``header`` and ``payload``.
    """

    header: In(stream.Signature(message_header_layout()))
    payload: In(stream.Signature(32))
    tx: Out(stream.Signature(ChunkBeat))

    def elaborate(self, platform):
        m = Module()
        hdr = Signal(message_header_layout())
        words_left = Signal(HEADER_FIELDS["length"][1])
        crc = Signal(32)
        is_state_data = hdr.type == MsgType.STATE_DATA
        sent = self.tx.valid & self.tx.ready

        with m.FSM(name="encode"):
            with m.State("HEAD"):
                m.d.comb += [self.tx.valid.eq(self.header.valid),
                             self.tx.payload.data.eq(self.header.payload.as_value()[:32]),
                             self.header.ready.eq(self.tx.ready)]
                with m.If(sent):
                    m.d.sync += [hdr.eq(self.header.payload), crc.eq(CRC32_INIT),
                                 words_left.eq(self.header.payload.length)]
                    m.next = "ARG"
            with m.State("ARG"):
                m.d.comb += [self.tx.valid.eq(1), self.tx.payload.data.eq(hdr.arg),
                             self.tx.payload.last.eq((hdr.length == 0) & ~is_state_data)]
                with m.If(sent):
                    with m.If(hdr.length != 0):
                        m.next = "PAYLOAD"
                    with m.Elif(is_state_data):
                        m.next = "CRC"
                    with m.Else():
                        m.next = "HEAD"
            with m.State("PAYLOAD"):
                final = words_left == 1
                m.d.comb += [self.tx.valid.eq(self.payload.valid),
                             self.tx.payload.data.eq(self.payload.payload),
                             self.tx.payload.last.eq(final & ~is_state_data),
                             self.payload.ready.eq(self.tx.ready)]
                with m.If(sent):
                    m.d.sync += [words_left.eq(words_left - 1),
                                 crc.eq(crc32_word_update(crc, self.payload.payload))]
                    with m.If(final & is_state_data):
                        m.next = "CRC"
                    with m.Elif(final):
                        m.next = "HEAD"
            with m.State("CRC"):
                m.d.comb += [self.tx.valid.eq(1), self.tx.payload.data.eq(crc ^ CRC32_XOROUT),
                             self.tx.payload.last.eq(1)]
                with m.If(sent):
                    m.next = "HEAD"
        return m


__all__ = ["HEADER_QUEUE_DEPTH", "header_word_layout", "message_header_layout",
           "malformed_event_layout", "MigProtoDecoder", "MigProtoEncoder"]
