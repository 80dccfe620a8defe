"""The source side's data mover: pre-copy rounds, stop-copy, and control messages."""

from enum import IntEnum
from types import SimpleNamespace

from amaranth import Cat, Const, Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from model.protocol import MsgType, pack_header
from model.state import ImageLayout

from .formats import ChunkBeat, DmaStatus, bits_for, descriptor_layout


class _Phase(IntEnum):
    """The copier's current pass (where a chunk returns to)."""
    FULL_PRE = 0    # pre-copy round 0: the whole image
    FULL_ONLY = 1   # stop-copy without pre-copy: the whole image
    RESID_FULL = 2  # stop-copy finishing an interrupted round 0
    DIRTY_PRE = 3   # a pre-copy dirty round
    RESID = 4       # stop-copy: the dirty blocks
    META = 5        # stop-copy: the CSR/MSI-X/PBA words


class CopyMode(IntEnum):
    PRECOPY = 0   # round 0 = whole image, then dirty rounds until converged
    RESIDUAL = 1  # stop-copy after pre-copy: every dirty block, then the CSR/MSI-X/PBA words
    FULL = 2      # stop-copy without pre-copy: the whole image


class ControlMessage(data.Struct):
    """A header-only protocol message for the copier to send (the VF is the copier's)."""
    type: 4
    reason: 4
    arg: 32


class MigCopier(wiring.Component):
    """Streams one VF slot's state image as STATE_DATA messages (DESIGN §4 PRE_COPY/STOP_COPY).

    The VF engine starts a copy with ``start``/``mode``; the copier reads the slot's dirty
    bitmap (read-and-clear), issues one DMA read descriptor per chunk (``chunk_words`` words
    in full-image passes, one dirty block otherwise) and frames each chunk as a STATE_DATA
    message: header, offset, the DMA's payload and CRC beats.  After each pre-copy round it
    sends ROUND_END; rounds stop when the dirty blocks are at most ``threshold_blocks`` or
    after ``max_rounds`` dirty rounds (``converged``).  ``stop`` ends a pre-copy at the next
    chunk boundary (abort, or switch to stop-copy).  While idle it sends control messages
    offered on ``msg``.

    Members
    -------
    start, mode, stop : In        copy control (``start`` is a one-cycle pulse)
    vf, slot : In                 the VF being migrated and its slot (stable while busy)
    busy, converged : Out
    rounds, words_sent, initial_left : Out   progress: dirty rounds, payload words sent,
                                             round-0 words not yet sent
    msg : In(stream of ControlMessage)      accepted only while idle
    dirty_rd_en/_slot/_word, dirty_rd_bits, dirty_clear, dirty_count : the VF unit's
                                             dirty-tracking port (``dirty_count`` of ``slot``)
    rd_desc, rd_data, rd_done : the DMA's read side
    dma_error : Out               a DMA read failed since the last start (sticky)
    tx : Out(stream of ChunkBeat) protocol messages out
    """

    def __init__(self, layout: ImageLayout, n_slots: int, n_vfs: int, chunk_words: int,
                 threshold_blocks: int, max_rounds: int):
        if not 1 <= chunk_words <= layout.image_words:
            raise ValueError(f"chunk_words must be in [1, {layout.image_words}] (the image), "
                             f"not {chunk_words}")
        self.layout, self.chunk_words = layout, chunk_words
        self.threshold_blocks, self.max_rounds = threshold_blocks, max_rounds
        word_bits = layout.addr_bits + 1
        super().__init__({
            "start": In(1), "mode": In(2), "stop": In(1),
            "vf": In(bits_for(n_vfs)), "slot": In(bits_for(n_slots)),
            "busy": Out(1), "converged": Out(1),
            "rounds": Out(8), "words_sent": Out(32), "initial_left": Out(word_bits),
            "msg": In(stream.Signature(ControlMessage)),
            "dirty_rd_en": Out(1), "dirty_rd_slot": Out(bits_for(n_slots)),
            "dirty_rd_word": Out(bits_for(layout.dirty_words)), "dirty_rd_bits": In(32),
            "dirty_clear": Out(1), "dirty_count": In(bits_for(layout.n_blocks + 1)),
            "rd_desc": Out(stream.Signature(descriptor_layout(layout, n_slots))),
            "rd_data": In(stream.Signature(ChunkBeat)),
            "rd_done": In(stream.Signature(DmaStatus)),
            "dma_error": Out(1),
            "tx": Out(stream.Signature(ChunkBeat)),
        })

    def elaborate(self, platform):
        m = Module()
        lay = self.layout
        word_bits = lay.addr_bits + 1
        r = SimpleNamespace(
            offset=Signal(word_bits),        # next word of a full-image pass
            chunk_offset=Signal(word_bits),
            chunk_length=Signal(word_bits),
            dirty_word=Signal.like(self.dirty_rd_word),
            dirty_bits=Signal(32),
            round_blocks=Signal(24),
            desc_pending=Signal(),
            msg=Signal(ControlMessage),
            # what the current pass is, to know where to return after a chunk
            phase=Signal(range(len(_Phase))),
            lowest=Signal(5),                # lowest set bit of the dirty word being scanned
        )

        m.d.comb += [
            self.dirty_rd_slot.eq(self.slot),
            self.dirty_rd_word.eq(r.dirty_word),
            self.rd_desc.valid.eq(r.desc_pending),
            self.rd_desc.payload.slot.eq(self.slot),
            self.rd_desc.payload.offset.eq(r.chunk_offset),
            self.rd_desc.payload.length.eq(r.chunk_length),
            self.rd_done.ready.eq(1),
        ]
        with m.If(self.rd_desc.valid & self.rd_desc.ready):
            m.d.sync += r.desc_pending.eq(0)
        with m.If(self.rd_done.valid & self.rd_done.payload.as_value().any()):
            m.d.sync += self.dma_error.eq(1)
        for i in reversed(range(32)):
            with m.If(r.dirty_bits[i]):
                m.d.comb += r.lowest.eq(i)

        with m.FSM():
            self._idle(m, r)
            self._full_pass(m, r)
            self._dirty_scan(m, r)
            self._chunk(m, r)
            self._round_end(m, r)
            self._control(m, r)
        return m

    @staticmethod
    def _send_chunk(m: Module, r: SimpleNamespace, off, length) -> None:
        m.d.sync += [r.chunk_offset.eq(off), r.chunk_length.eq(length), r.desc_pending.eq(1)]
        m.next = "CHUNK_HEADER"

    @staticmethod
    def _after_chunk(m: Module, r: SimpleNamespace) -> None:
        """Back to the pass the chunk belongs to."""
        with m.Switch(r.phase):
            with m.Case(_Phase.FULL_PRE, _Phase.FULL_ONLY, _Phase.RESID_FULL):
                m.next = "FULL_NEXT"
            with m.Case(_Phase.DIRTY_PRE, _Phase.RESID):
                m.next = "SCAN_BITS"
            with m.Default():
                m.next = "IDLE"

    def _header(self, type_, length=0, reason=0):
        return Const(pack_header(type_, 0, length, 0), 32) | (self.vf << 8) | (reason << 4)

    def _idle(self, m: Module, r: SimpleNamespace) -> None:
        """Wait for a copy to start or a control message to send."""
        lay = self.layout
        with m.State("IDLE"):
            m.d.comb += self.msg.ready.eq(1)
            with m.If(self.msg.valid):
                m.d.sync += r.msg.eq(self.msg.payload)
                m.next = "MSG_HEADER"
            with m.Elif(self.start):
                with m.If(self.mode != CopyMode.RESIDUAL):
                    m.d.sync += [self.rounds.eq(0), self.words_sent.eq(0),
                                 self.converged.eq(0), self.dma_error.eq(0),
                                 r.offset.eq(0)]
                with m.Switch(self.mode):
                    with m.Case(CopyMode.PRECOPY):
                        m.d.comb += self.dirty_clear.eq(1)
                        m.d.sync += [r.phase.eq(_Phase.FULL_PRE), r.round_blocks.eq(lay.n_blocks),
                                     self.initial_left.eq(lay.image_words)]
                        m.next = "FULL_NEXT"
                    with m.Case(CopyMode.FULL):
                        m.d.sync += r.phase.eq(_Phase.FULL_ONLY)
                        m.next = "FULL_NEXT"
                    with m.Default():
                        # A pre-copy stopped inside round 0 finishes that pass first:
                        # the bitmap only covers writes since round 0 began.
                        with m.If(r.offset < lay.image_words):
                            m.d.sync += r.phase.eq(_Phase.RESID_FULL)
                            m.next = "FULL_NEXT"
                        with m.Else():
                            m.d.sync += [r.phase.eq(_Phase.RESID), r.dirty_word.eq(0)]
                            m.next = "SCAN_READ"

    def _full_pass(self, m: Module, r: SimpleNamespace) -> None:
        """A full-image pass, one ``chunk_words`` chunk at a time."""
        lay = self.layout
        word_bits = lay.addr_bits + 1
        with m.State("FULL_NEXT"):
            m.d.comb += self.busy.eq(1)
            with m.If(self.stop & (r.phase == _Phase.FULL_PRE)):
                m.next = "IDLE"
            with m.Elif(r.offset >= lay.image_words):
                with m.Switch(r.phase):
                    with m.Case(_Phase.FULL_PRE):
                        m.next = "ROUND_END_HEADER"
                    with m.Case(_Phase.RESID_FULL):
                        m.d.sync += [r.phase.eq(_Phase.RESID), r.dirty_word.eq(0)]
                        m.next = "SCAN_READ"
                    with m.Default():
                        m.next = "IDLE"
            with m.Else():
                left = lay.image_words - r.offset
                length = Signal(word_bits)
                m.d.comb += length.eq(self.chunk_words)
                with m.If(left < self.chunk_words):
                    m.d.comb += length.eq(left)
                m.d.sync += r.offset.eq(r.offset + length)
                self._send_chunk(m, r, r.offset, length)

    def _dirty_scan(self, m: Module, r: SimpleNamespace) -> None:
        """A dirty pass: scan the bitmap word by word, one chunk per dirty block."""
        lay = self.layout
        word_bits = lay.addr_bits + 1
        with m.State("SCAN_READ"):
            m.d.comb += [self.busy.eq(1), self.dirty_rd_en.eq(1)]
            m.next = "SCAN_LATCH"
        with m.State("SCAN_LATCH"):
            m.d.comb += self.busy.eq(1)
            m.d.sync += r.dirty_bits.eq(self.dirty_rd_bits)
            m.next = "SCAN_BITS"
        with m.State("SCAN_BITS"):
            m.d.comb += self.busy.eq(1)
            # Stop only between bitmap words: the latched word's blocks were cleared
            # by its read, so they must be sent before a stop-copy re-scans.
            with m.If(self.stop & (r.phase == _Phase.DIRTY_PRE) & (r.dirty_bits == 0)):
                m.next = "IDLE"
            with m.Elif(r.dirty_bits == 0):
                with m.If(r.dirty_word == lay.dirty_words - 1):
                    with m.If(r.phase == _Phase.DIRTY_PRE):
                        m.next = "ROUND_END_HEADER"
                    with m.Else():
                        m.d.sync += r.phase.eq(_Phase.META)
                        self._send_chunk(m, r, 0, lay.meta_words)
                with m.Else():
                    m.d.sync += r.dirty_word.eq(r.dirty_word + 1)
                    m.next = "SCAN_READ"
            with m.Else():
                block = Signal(bits_for(lay.dirty_words * 32))
                m.d.comb += block.eq(Cat(r.lowest, r.dirty_word))
                start = Signal(word_bits + 5)
                m.d.comb += start.eq(block * lay.block_words)
                length = Signal(word_bits)
                m.d.comb += length.eq(lay.block_words)
                with m.If(lay.image_words - start < lay.block_words):
                    m.d.comb += length.eq(lay.image_words - start)
                m.d.sync += [r.dirty_bits.eq(r.dirty_bits & ~(1 << r.lowest)),
                             r.round_blocks.eq(r.round_blocks + 1)]
                self._send_chunk(m, r, start, length)

    def _chunk(self, m: Module, r: SimpleNamespace) -> None:
        """One STATE_DATA message: header, offset, the DMA's beats (payload, CRC)."""
        with m.State("CHUNK_HEADER"):
            m.d.comb += [self.busy.eq(1), self.tx.valid.eq(1),
                         self.tx.payload.data.eq(self._header(MsgType.STATE_DATA)
                                                 | (r.chunk_length << 16))]
            with m.If(self.tx.ready):
                m.next = "CHUNK_OFFSET"
        with m.State("CHUNK_OFFSET"):
            m.d.comb += [self.busy.eq(1), self.tx.valid.eq(1),
                         self.tx.payload.data.eq(r.chunk_offset)]
            with m.If(self.tx.ready):
                m.next = "CHUNK_DATA"
        with m.State("CHUNK_DATA"):
            m.d.comb += [self.busy.eq(1),
                         self.tx.payload.eq(self.rd_data.payload),
                         self.tx.valid.eq(self.rd_data.valid),
                         self.rd_data.ready.eq(self.tx.ready)]
            with m.If(self.rd_data.valid & self.tx.ready & self.rd_data.payload.last):
                m.d.sync += self.words_sent.eq(self.words_sent + r.chunk_length)
                with m.If(r.phase == _Phase.FULL_PRE):
                    m.d.sync += self.initial_left.eq(self.initial_left - r.chunk_length)
                m.next = "CHUNK_DONE"
            with m.Elif(self.rd_done.valid & ~self.rd_data.valid):
                # The DMA refused the descriptor (no beats come): end the message early,
                # so the target sees a short STATE_DATA (a length error) and refuses the
                # image at SWITCHOVER, instead of this copier waiting forever.
                m.next = "CHUNK_TRUNCATE"
        with m.State("CHUNK_TRUNCATE"):
            m.d.comb += [self.busy.eq(1), self.tx.valid.eq(1), self.tx.payload.last.eq(1)]
            with m.If(self.tx.ready):
                self._after_chunk(m, r)
        with m.State("CHUNK_DONE"):
            m.d.comb += self.busy.eq(1)
            with m.If(self.rd_done.valid):
                self._after_chunk(m, r)

    def _round_end(self, m: Module, r: SimpleNamespace) -> None:
        """ROUND_END after a pre-copy round, then converge or start the next round."""
                # ROUND_END: header, round | blocks << 8, then the dirty blocks left.
        with m.State("ROUND_END_HEADER"):
            m.d.comb += [self.busy.eq(1), self.tx.valid.eq(1),
                         self.tx.payload.data.eq(self._header(MsgType.ROUND_END, length=1))]
            with m.If(self.tx.ready):
                m.next = "ROUND_END_ARG"
        with m.State("ROUND_END_ARG"):
            m.d.comb += [self.busy.eq(1), self.tx.valid.eq(1),
                         self.tx.payload.data.eq(Cat(self.rounds, r.round_blocks))]
            with m.If(self.tx.ready):
                m.next = "ROUND_END_DIRTY"
        with m.State("ROUND_END_DIRTY"):
            m.d.comb += [self.busy.eq(1), self.tx.valid.eq(1),
                         self.tx.payload.data.eq(self.dirty_count),
                         self.tx.payload.last.eq(1)]
            with m.If(self.tx.ready):
                m.next = "ROUND_CHECK"
        with m.State("ROUND_CHECK"):
            m.d.comb += self.busy.eq(1)
            with m.If(self.stop):
                m.next = "IDLE"
            with m.Elif((self.dirty_count <= self.threshold_blocks)
                        | (self.rounds >= self.max_rounds)):
                m.d.sync += self.converged.eq(1)
                m.next = "IDLE"
            with m.Else():
                m.d.sync += [self.rounds.eq(self.rounds + 1), r.round_blocks.eq(0),
                             r.dirty_word.eq(0), r.phase.eq(_Phase.DIRTY_PRE)]
                m.next = "SCAN_READ"

    def _control(self, m: Module, r: SimpleNamespace) -> None:
        """A header-only control message offered on ``msg``."""
        with m.State("MSG_HEADER"):
            m.d.comb += [self.busy.eq(1), self.tx.valid.eq(1),
                         self.tx.payload.data.eq(
                             self._header(0) | r.msg.type | (r.msg.reason << 4))]
            with m.If(self.tx.ready):
                m.next = "MSG_ARG"
        with m.State("MSG_ARG"):
            m.d.comb += [self.busy.eq(1), self.tx.valid.eq(1),
                         self.tx.payload.data.eq(r.msg.arg), self.tx.payload.last.eq(1)]
            with m.If(self.tx.ready):
                m.next = "IDLE"
