"""State DMA: moves state-image words between a VF unit's state-access port and chunk streams.

A descriptor ``{slot, offset, length}`` names words ``[offset, offset + length)`` of one
slot's image. On the wire a chunk is ``length`` data beats (``last=0``) followed by one CRC
beat (``last=1``) whose data is ``model.protocol.crc32`` of the chunk's words.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import enum, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from hdl.crc32 import CRC32_INIT, CRC32_XOROUT, crc32_word_update
from hdl.formats import ChunkBeat, DmaStatus, bits_for, descriptor_layout
from model.common import check_int
from model.state import ImageLayout


class _Issue(enum.Enum, shape=2):
    """What the read side's issue stage does next."""
    IDLE = 0
    READ = 1   # read one word per cycle while the output queue has room
    CRC = 2    # queue the chunk's CRC beat behind its last word
    ERR = 3    # queue a bounds-error status (a refused descriptor)


class _Token(enum.Enum, shape=2):
    """Kind of an entry in the read side's output queue."""
    DATA = 0
    CRC = 1
    ERR = 2


class DMA(wiring.Component):
    """State DMA between one VF unit's state-access port and chunk streams.

    Parameters
    ----------
    layout : ImageLayout
        The slot image layout (``image_words``, ``addr_bits``).
    n_slots : int
        Slots of the VF unit; the flat state address is ``Cat(offset[addr_bits], slot)``.
    max_chunk_words : int
        Longest accepted descriptor.

    A descriptor is refused (``bounds_error``) when ``slot >= n_slots``, ``length == 0``,
    ``length > max_chunk_words`` or ``offset + length > layout.image_words``: nothing is
    read or written for it. Statuses of each side come out in descriptor order, exactly one
    per descriptor. The read and write sides are independent and may run concurrently.

    Members
    -------
    rd_desc : In(stream.Signature(descriptor_layout))
        Read descriptors. The next one is taken while the previous chunk's CRC is queued.
    rd_data : Out(stream.Signature(ChunkBeat))
        Per descriptor, ``length`` data beats then the CRC beat (``last=1``). The first beat
        is valid 3 cycles after its descriptor is accepted; back to back descriptors stream
        ``length`` words every ``length + 1`` cycles. Backpressure stops new reads once
        the 4-entry output queue (which holds reads in flight) would fill: nothing is lost.
    rd_done : Out(stream.Signature(DmaStatus))
        One status per read descriptor: the cycle after its CRC beat is accepted, or, for a
        refused descriptor, with ``bounds_error=1`` and no beats at all (4 cycles after it
        was accepted when nothing is queued ahead of it). While a status waits on
        ``rd_done.ready`` the next CRC beat (not the data beats) is held back.
    wr_desc : In(stream.Signature(descriptor_layout))
        Write descriptors; the next one is taken in the cycle its predecessor's last beat is
        (so ``ready`` depends combinationally on ``wr_data.valid``/``payload.last``).
    wr_data : In(stream.Signature(ChunkBeat))
        Per descriptor, ``length`` data beats then the CRC beat (``last=1``), one per cycle.
        ``ready`` is low only without a descriptor or while the previous status waits
        (``ready`` depends combinationally on ``wr_done.ready``).
    wr_done : Out(stream.Signature(DmaStatus))
        One status per write descriptor, the cycle after its ``last`` beat: ``crc_error`` if
        the CRC beat does not match the data beats, ``length_error`` if ``last`` came before
        the CRC beat's position (the early ``last`` beat is not written) or after it (beats
        past the chunk are discarded up to ``last``), ``bounds_error`` for a refused
        descriptor (its beats are discarded up to ``last``).
    sa_rd_en, sa_rd_addr : Out(1), Out(slot_bits + addr_bits)
        State-access read; the VF unit returns ``sa_rd_data`` in the next cycle.
    sa_rd_data : In(32)
    sa_wr_en, sa_wr_addr, sa_wr_data : Out(1), Out(slot_bits + addr_bits), Out(32)
        State-access write (always accepted), issued the cycle after its data beat, so
        every word of a chunk is written before its status is valid.
    """

    QUEUE_DEPTH = 4  # covers the 2 cycles from issue to pop, so reads never pause

    def __init__(self, layout: ImageLayout, n_slots: int, max_chunk_words: int = 256):
        if not isinstance(layout, ImageLayout):
            raise TypeError(f"DMA layout must be an ImageLayout, not {layout!r}")
        check_int("DMA", "n_slots", n_slots, 1)
        check_int("DMA", "max_chunk_words", max_chunk_words, 1)
        self.layout = layout
        self.n_slots = n_slots
        self.max_chunk_words = max_chunk_words
        self.slot_bits = bits_for(n_slots)
        sa_addr_bits = self.slot_bits + layout.addr_bits
        desc = descriptor_layout(layout, n_slots)
        super().__init__({
            "rd_desc": In(stream.Signature(desc)),
            "rd_data": Out(stream.Signature(ChunkBeat)),
            "rd_done": Out(stream.Signature(DmaStatus)),
            "wr_desc": In(stream.Signature(desc)),
            "wr_data": In(stream.Signature(ChunkBeat)),
            "wr_done": Out(stream.Signature(DmaStatus)),
            "sa_rd_en": Out(1),
            "sa_rd_addr": Out(sa_addr_bits),
            "sa_rd_data": In(32),
            "sa_wr_en": Out(1),
            "sa_wr_addr": Out(sa_addr_bits),
            "sa_wr_data": Out(32),
        })

    def _refused(self, desc):
        return ((desc.slot >= self.n_slots) | (desc.length == 0)
                | (desc.length > self.max_chunk_words)
                | (desc.offset + desc.length > self.layout.image_words))

    def elaborate(self, platform):
        m = Module()
        self._elaborate_read(m)
        self._elaborate_write(m)
        return m

    def _elaborate_read(self, m: Module) -> None:
        addr_bits = self.layout.addr_bits
        desc = self.rd_desc.payload

        # Output queue: data words as they return from the VF unit, CRC beats and refusals,
        # in order. Space is reserved when a read is issued (credit), so the word in flight
        # always has a place whatever rd_data does.
        queue = m.submodules.rd_queue = fifo.SyncFIFO(width=34, depth=self.QUEUE_DEPTH)

        # Stage 0: issue.
        mode = Signal(_Issue)
        slot = Signal(self.slot_bits)
        offset = Signal(addr_bits)
        remaining = Signal.like(desc.length)
        tok_valid = Signal()
        tok_kind = Signal(_Token)
        go = queue.level + tok_valid < self.QUEUE_DEPTH

        m.d.sync += tok_valid.eq(0)
        with m.If(go):
            with m.Switch(mode):
                with m.Case(_Issue.READ):
                    m.d.comb += [self.sa_rd_en.eq(1), self.sa_rd_addr.eq(Cat(offset, slot))]
                    m.d.sync += [tok_valid.eq(1), tok_kind.eq(_Token.DATA),
                                 offset.eq(offset + 1), remaining.eq(remaining - 1)]
                    with m.If(remaining == 1):
                        m.d.sync += mode.eq(_Issue.CRC)
                with m.Case(_Issue.CRC):
                    m.d.sync += [tok_valid.eq(1), tok_kind.eq(_Token.CRC), mode.eq(_Issue.IDLE)]
                with m.Case(_Issue.ERR):
                    m.d.sync += [tok_valid.eq(1), tok_kind.eq(_Token.ERR), mode.eq(_Issue.IDLE)]

        # The next descriptor is decoded while the previous chunk's last token is issued.
        m.d.comb += self.rd_desc.ready.eq(
            (mode == _Issue.IDLE) | (((mode == _Issue.CRC) | (mode == _Issue.ERR)) & go))
        with m.If(self.rd_desc.valid & self.rd_desc.ready):
            m.d.sync += [slot.eq(desc.slot), offset.eq(desc.offset[:addr_bits]),
                         remaining.eq(desc.length)]
            with m.If(self._refused(desc)):
                m.d.sync += mode.eq(_Issue.ERR)
            with m.Else():
                m.d.sync += mode.eq(_Issue.READ)

        # Stage 1: the read word arrives; queue it and fold it into the running CRC.
        crc = Signal(32, init=CRC32_INIT)
        with m.If(tok_valid):
            m.d.comb += queue.w_en.eq(1)
            with m.Switch(tok_kind):
                with m.Case(_Token.DATA):
                    m.d.comb += queue.w_data.eq(Cat(self.sa_rd_data, _Token.DATA))
                    m.d.sync += crc.eq(crc32_word_update(crc, self.sa_rd_data))
                with m.Case(_Token.CRC):
                    m.d.comb += queue.w_data.eq(Cat(crc ^ CRC32_XOROUT, _Token.CRC))
                    m.d.sync += crc.eq(CRC32_INIT)
                with m.Default():
                    m.d.comb += queue.w_data.eq(Cat(Const(0, 32), tok_kind))

        # Output: beats go to rd_data, statuses to a one-entry rd_done register.
        head_data = queue.r_data[:32]
        head_kind = _Token(queue.r_data[32:])
        done_valid = Signal()
        done_bounds = Signal()
        m.d.comb += [
            self.rd_data.valid.eq(queue.r_rdy & ((head_kind == _Token.DATA)
                                                 | ((head_kind == _Token.CRC) & ~done_valid))),
            self.rd_data.payload.data.eq(head_data),
            self.rd_data.payload.last.eq(head_kind == _Token.CRC),
            self.rd_done.valid.eq(done_valid),
            self.rd_done.payload.bounds_error.eq(done_bounds),
        ]
        with m.If(self.rd_done.valid & self.rd_done.ready):
            m.d.sync += done_valid.eq(0)
        with m.If(self.rd_data.valid & self.rd_data.ready):
            m.d.comb += queue.r_en.eq(1)
            with m.If(head_kind == _Token.CRC):
                m.d.sync += [done_valid.eq(1), done_bounds.eq(0)]
        with m.If(queue.r_rdy & (head_kind == _Token.ERR) & ~done_valid):
            m.d.comb += queue.r_en.eq(1)
            m.d.sync += [done_valid.eq(1), done_bounds.eq(1)]

    def _elaborate_write(self, m: Module) -> None:
        addr_bits = self.layout.addr_bits
        desc = self.wr_desc.payload
        beat = self.wr_data.payload

        busy = Signal()
        refused = Signal()
        late = Signal()       # past the CRC beat's position without ``last``: discarding
        slot = Signal(self.slot_bits)
        offset = Signal(addr_bits)
        remaining = Signal.like(desc.length)
        crc = Signal(32, init=CRC32_INIT)
        done_valid = Signal()
        done = Signal(DmaStatus)

        m.d.comb += [
            self.wr_data.ready.eq(busy & (~done_valid | self.wr_done.ready)),
            self.wr_done.valid.eq(done_valid),
            self.wr_done.payload.eq(done),
        ]
        with m.If(self.wr_done.valid & self.wr_done.ready):
            m.d.sync += done_valid.eq(0)

        def finish(**flags):
            m.d.sync += [busy.eq(0), done_valid.eq(1),
                         done.eq(DmaStatus.const({"bounds_error": 0, "crc_error": 0,
                                                  "length_error": 0}))]
            for name, value in flags.items():
                m.d.sync += getattr(done, name).eq(value)

        accepted = self.wr_data.valid & self.wr_data.ready
        m.d.sync += self.sa_wr_en.eq(0)
        with m.If(accepted):
            with m.If(refused | late):
                with m.If(beat.last):
                    finish(bounds_error=refused, length_error=late)
            with m.Elif(remaining != 0):
                with m.If(beat.last):
                    finish(length_error=1)
                with m.Else():
                    m.d.sync += [
                        self.sa_wr_en.eq(1), self.sa_wr_addr.eq(Cat(offset, slot)),
                        self.sa_wr_data.eq(beat.data),
                        offset.eq(offset + 1), remaining.eq(remaining - 1),
                        crc.eq(crc32_word_update(crc, beat.data)),
                    ]
            with m.Else():
                with m.If(beat.last):
                    finish(crc_error=beat.data != (crc ^ CRC32_XOROUT))
                with m.Else():
                    m.d.sync += late.eq(1)

        # Taken in the cycle the previous chunk ends, so chunks stream back to back.
        m.d.comb += self.wr_desc.ready.eq(~busy | (accepted & beat.last))
        with m.If(self.wr_desc.valid & self.wr_desc.ready):
            m.d.sync += [busy.eq(1), refused.eq(self._refused(desc)), late.eq(0),
                         slot.eq(desc.slot), offset.eq(desc.offset[:addr_bits]),
                         remaining.eq(desc.length), crc.eq(CRC32_INIT)]


__all__ = ["DMA"]
