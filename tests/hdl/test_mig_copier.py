# amaranth: UnusedElaboratable=no
"""hdl/mig_copier.py in amaranth.sim, alone, against Python models of its neighbours.

``CopierEnv`` models the VF unit's dirty-bitmap port (read-and-clear, ``dirty_clear``,
population count), the DMA's read side (descriptor in; data beats, CRC beat, status out)
over a source image the test may write to while a copy runs (each write marks its block,
as the VF unit does), and the message sink behind ``tx`` (random backpressure).  Every
expected message sequence below is derived from the writes the test made and the layout,
and every STATE_DATA is also replayed into a target image that must end equal to the
source image.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import pytest
from amaranth.sim import Simulator

from hdl.mig_copier import CopyMode, MigCopier
from model.protocol import Message, MsgType, Reason, crc32, pack_header, unpack_header
from model.state import ImageLayout

LAYOUT = ImageLayout(csr_words=4, msix_vectors=2, mem_words=32, block_words=8)
# 45 words: blocks 0..5 (block 5 = words 40..44, 5 words), meta = words 0..12
FINE = ImageLayout(csr_words=4, msix_vectors=2, mem_words=32, block_words=1)
# 45 one-word blocks: two bitmap words
N_SLOTS, N_VFS = 2, 4
VF, SLOT = 3, 1
CHUNK = 16


def make(layout=LAYOUT, chunk=CHUNK, threshold=1, max_rounds=3) -> MigCopier:
    return MigCopier(layout, N_SLOTS, N_VFS, chunk, threshold, max_rounds)


@dataclass
class CopierEnv:
    """Neighbour models of one MigCopier; one process does all of them, once per cycle."""
    dut: MigCopier
    rng: random.Random
    backpressure: float = 0.0        # tx.ready low
    dma_delay: int = 2               # most cycles from a descriptor to its first beat
    dma_gap: float = 0.0             # random gaps between DMA beats
    write_prob: float = 0.0          # random VM writes to the source image per cycle
    corrupt_crc: set[int] = field(default_factory=set)   # chunk numbers with a wrong CRC
    bounds_error: set[int] = field(default_factory=set)  # chunk numbers refused by the "DMA"
    error_status: set[int] = field(default_factory=set)  # chunks sent, then an error status

    def __post_init__(self):
        lay = self.dut.layout
        self.layout = lay
        self.src = [self.rng.getrandbits(32) for _ in range(lay.image_words)]
        self.dst = [None] * lay.image_words
        self.bitmap: set[int] = set()
        self.pending_marks: list[int] = []
        self.cycle = 0
        self.beats: list[tuple[int, int]] = []     # (data, last) accepted on tx
        self.messages: list[list[int]] = []         # complete messages, as words
        self.descriptors: list[dict] = []
        self.crc_sent: list[int] = []               # CRC beat the DMA model sent per chunk
        self.dirty_reads: list[tuple[int, int]] = []  # (slot, word) of every bitmap read
        self.clears = 0
        self.writes_enabled = True
        self.problems: list[str] = []
        self._chunk = None   # [beats left, done delay]
        self._current: list[int] = []

    # -- what a test does to the source VF
    def write(self, addr: int, value: int) -> None:
        """A VM write: the word changes and its block is marked at the next clock edge."""
        self.src[addr] = value & 0xFFFF_FFFF
        self.pending_marks.append(self.layout.block_of(addr))

    def mark_blocks(self, *blocks: int) -> None:
        for block in blocks:
            start, _ = self.layout.block_range(block)
            self.write(start, self.rng.getrandbits(32))

    # -- decoded views
    def decoded(self) -> list[Message]:
        return [Message.from_words(words) for words in self.messages]

    def summary(self) -> list[tuple]:
        """(STATE_DATA, offset, length) / (ROUND_END, round, blocks, dirty) / (type, arg)."""
        out = []
        for msg in self.decoded():
            if msg.type == MsgType.STATE_DATA:
                out.append(("DATA", msg.arg, len(msg.payload)))
            elif msg.type == MsgType.ROUND_END:
                out.append(("ROUND_END", msg.arg & 0xFF, msg.arg >> 8, msg.payload[0]))
            else:
                out.append((msg.type.name, msg.arg))
        return out

    def apply_state_data(self) -> None:
        for msg in self.decoded():
            if msg.type == MsgType.STATE_DATA:
                self.dst[msg.arg:msg.arg + len(msg.payload)] = msg.payload

    # -- the per-cycle model
    async def process(self, ctx):
        dut, lay = self.dut, self.layout
        async for _, _, rd_en, rd_slot, rd_word, clear, desc_valid, desc_ready, desc, \
                data_valid, data_ready, done_valid, tx_valid, tx_ready, tx in ctx.tick().sample(
                    dut.dirty_rd_en, dut.dirty_rd_slot, dut.dirty_rd_word, dut.dirty_clear,
                    dut.rd_desc.valid, dut.rd_desc.ready, dut.rd_desc.payload,
                    dut.rd_data.valid, dut.rd_data.ready, dut.rd_done.valid,
                    dut.tx.valid, dut.tx.ready, dut.tx.payload):
            self.cycle += 1
            # dirty bitmap: a clear wins over everything, a read clears its word, marks of
            # this edge survive a read (model of VFUnit's read-and-clear)
            if clear:
                self.clears += 1
                self.bitmap.clear()
                self.pending_marks.clear()
            if rd_en:
                self.dirty_reads.append((rd_slot, rd_word))
                base = rd_word * 32
                word = sum(1 << (b - base) for b in self.bitmap if base <= b < base + 32)
                self.bitmap -= {b for b in self.bitmap if base <= b < base + 32}
                ctx.set(dut.dirty_rd_bits, word if rd_slot == SLOT else 0)
            self.bitmap.update(self.pending_marks)
            self.pending_marks.clear()
            ctx.set(dut.dirty_count, len(self.bitmap))
            # DMA read side: one chunk at a time (the copier never has two outstanding)
            if desc_valid and desc_ready:
                d = {"slot": int(desc.slot), "offset": int(desc.offset),
                     "length": int(desc.length)}
                number = len(self.descriptors)
                self.descriptors.append(d)
                if self._chunk is not None:
                    self.problems.append(f"descriptor {d} while a chunk is outstanding")
                if number in self.bounds_error:
                    beats = []
                else:
                    words = self.src[d["offset"]:d["offset"] + d["length"]]
                    crc = crc32(words) ^ (0x5A5A_0001 if number in self.corrupt_crc else 0)
                    self.crc_sent.append(crc)
                    beats = [(w, 0) for w in words] + [(crc, 1)]
                self._chunk = {"beats": beats, "wait": self.rng.randint(1, self.dma_delay),
                               "done": None, "error": number in self.bounds_error,
                               "status_error": number in self.error_status}
            if data_valid and data_ready:
                self._chunk["beats"].pop(0)
                if not self._chunk["beats"]:
                    self._chunk["done"] = self.rng.randint(0, 2)
            if done_valid:
                self._chunk = None
            ctx.set(dut.rd_desc.ready, self._chunk is None and self.rng.random() < 0.8)
            self._drive_dma(ctx)
            # message sink
            if tx_valid and tx_ready:
                self.beats.append((int(tx.data), int(tx.last)))
                self._current.append(int(tx.data))
                if tx.last:
                    self.messages.append(self._current)
                    self._current = []
            ctx.set(dut.tx.ready, self.rng.random() >= self.backpressure)
            # VM traffic on the source VF
            if self.writes_enabled and self.write_prob and self.rng.random() < self.write_prob:
                self.write(self.rng.randrange(lay.image_words), self.rng.getrandbits(32))

    def _drive_dma(self, ctx):
        dut, chunk = self.dut, self._chunk
        ctx.set(dut.rd_done.valid, 0)
        if chunk is None:
            ctx.set(dut.rd_data.valid, 0)
            return
        if chunk["wait"] > 0:
            chunk["wait"] -= 1
            ctx.set(dut.rd_data.valid, 0)
            if chunk["wait"] == 0 and chunk["error"]:
                chunk["done"] = 0
            return
        offering = ctx.get(dut.rd_data.valid)
        if chunk["beats"]:
            if offering or self.rng.random() >= self.dma_gap:
                data, last = chunk["beats"][0]
                ctx.set(dut.rd_data.payload, {"data": data, "last": last})
                ctx.set(dut.rd_data.valid, 1)
            return
        ctx.set(dut.rd_data.valid, 0)
        if chunk["done"] is not None:
            if chunk["done"] == 0:
                ctx.set(dut.rd_done.valid, 1)
                ctx.set(dut.rd_done.payload, {"bounds_error": int(chunk["error"]
                                                                  or chunk["status_error"]),
                                              "crc_error": 0, "length_error": 0})
            else:
                chunk["done"] -= 1


class Driver:
    """The VF engine's side: start/stop/mode and control messages, with cycle limits."""

    def __init__(self, dut: MigCopier, env: CopierEnv):
        self.dut, self.env = dut, env

    async def start(self, ctx, mode: CopyMode, stop: bool = False) -> None:
        """A one-cycle ``start``; ``stop`` still high in that cycle (as the engine's DRAIN
        leaves it when it starts the residual), low afterwards."""
        ctx.set(self.dut.vf, VF)
        ctx.set(self.dut.slot, SLOT)
        ctx.set(self.dut.mode, mode)
        ctx.set(self.dut.stop, stop)
        ctx.set(self.dut.start, 1)
        await ctx.tick()
        ctx.set(self.dut.start, 0)
        ctx.set(self.dut.stop, 0)

    async def until(self, ctx, condition, what: str, limit: int = 5000) -> None:
        for _ in range(limit):
            if condition():
                return
            await ctx.tick()
        raise AssertionError(f"timeout after {limit} cycles waiting for {what}")

    async def wait_idle(self, ctx, limit: int = 5000) -> None:
        await self.until(ctx, lambda: not ctx.get(self.dut.busy), "busy to fall", limit)

    async def stop_when(self, ctx, condition, what: str) -> None:
        """Raise ``stop`` once ``condition()`` holds and keep it until the copier is idle."""
        await self.until(ctx, condition, what)
        ctx.set(self.dut.stop, 1)
        await ctx.tick()
        await self.wait_idle(ctx)

    async def send_msg(self, ctx, type_: MsgType, arg: int, reason: Reason = Reason.NONE):
        ctx.set(self.dut.msg.payload, {"type": type_, "reason": reason, "arg": arg})
        ctx.set(self.dut.msg.valid, 1)
        await ctx.tick().until(self.dut.msg.ready)
        ctx.set(self.dut.msg.valid, 0)


def simulate(dut: MigCopier, env: CopierEnv, scenario) -> None:
    driver = Driver(dut, env)
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(env.process, background=True)

    async def bench(ctx):
        ctx.set(dut.vf, VF)
        ctx.set(dut.slot, SLOT)
        await ctx.tick()
        await scenario(ctx, driver)
        for _ in range(10):  # nothing more may come out once idle
            await ctx.tick()

    sim.add_testbench(bench)
    sim.run()
    assert not env.problems, env.problems


def data_count(env: CopierEnv) -> int:
    return sum(1 for words in env.messages if unpack_header(words[0])["type"] == MsgType.STATE_DATA)


def full_pass(layout: ImageLayout, start: int = 0, chunk: int = CHUNK) -> list[tuple]:
    return [("DATA", off, min(chunk, layout.image_words - off))
            for off in range(start, layout.image_words, chunk)]


def block(layout: ImageLayout, number: int) -> tuple:
    return ("DATA", *layout.block_range(number))


def meta(layout: ImageLayout) -> tuple:
    return ("DATA", 0, layout.meta_words)


def check_common(env: CopierEnv) -> None:
    """Every message is well formed (header, CRC), names the VF, reads only the VF's slot."""
    for msg in env.decoded():  # from_words checks lengths and the CRC beat
        assert msg.vf == VF
    assert all(d["slot"] == SLOT for d in env.descriptors)
    assert all(slot == SLOT for slot, _ in env.dirty_reads)
    assert env._current == [], "a message was left unfinished"


# ------------------------------------------------------------------------ tests

def test_constructor_checks_chunk_words():
    for bad in (0, LAYOUT.image_words + 1):
        with pytest.raises(ValueError) as exc:
            make(chunk=bad)
        assert str(exc.value) == (f"chunk_words must be in [1, {LAYOUT.image_words}] "
                                  f"(the image), not {bad}")


def test_precopy_round0_then_converges_without_writes():
    dut = make()
    env = CopierEnv(dut, random.Random(1), backpressure=0.3, dma_gap=0.2)

    async def scenario(ctx, drv):
        env.mark_blocks(1, 4)   # dirty before the copy: dirty_clear must forget them
        await ctx.tick()
        await ctx.tick()
        assert env.bitmap == {1, 4}
        await drv.start(ctx, CopyMode.PRECOPY)
        assert ctx.get(dut.busy)
        await drv.wait_idle(ctx)
        assert ctx.get(dut.converged) == 1
        assert ctx.get(dut.rounds) == 0
        assert ctx.get(dut.words_sent) == LAYOUT.image_words
        assert ctx.get(dut.initial_left) == 0

    simulate(dut, env, scenario)
    check_common(env)
    assert env.summary() == full_pass(LAYOUT) + [("ROUND_END", 0, LAYOUT.n_blocks, 0)]
    assert env.clears >= 1
    env.apply_state_data()
    assert env.dst == env.src


def test_precopy_dirty_rounds_until_threshold():
    """Blocks written in round 0 go in round 1, ascending; round 1 leaves one dirty block,
    which is at the threshold (1): converged after one dirty round."""
    dut = make(threshold=1, max_rounds=3)
    env = CopierEnv(dut, random.Random(2), backpressure=0.2)

    async def scenario(ctx, drv):
        await drv.start(ctx, CopyMode.PRECOPY)
        await drv.until(ctx, lambda: data_count(env) >= 1, "the first chunk")
        env.mark_blocks(5, 0, 2)
        await drv.until(ctx, lambda: data_count(env) >= 4, "round 1's first block")
        env.mark_blocks(3)
        await drv.wait_idle(ctx)
        assert ctx.get(dut.converged) == 1
        assert ctx.get(dut.rounds) == 1
        assert ctx.get(dut.words_sent) == LAYOUT.image_words + 8 + 8 + 5

    simulate(dut, env, scenario)
    check_common(env)
    assert env.summary() == (full_pass(LAYOUT) + [("ROUND_END", 0, LAYOUT.n_blocks, 3)]
                             + [block(LAYOUT, 0), block(LAYOUT, 2), block(LAYOUT, 5)]
                             + [("ROUND_END", 1, 3, 1)])
    assert env.bitmap == {3}  # still dirty: stop-copy's business


def test_precopy_stops_converging_after_max_rounds():
    dut = make(threshold=0, max_rounds=2)
    env = CopierEnv(dut, random.Random(3))

    async def scenario(ctx, drv):
        await drv.start(ctx, CopyMode.PRECOPY)
        for sent in (1, 4, 5):  # one write in round 0, round 1 and round 2
            await drv.until(ctx, lambda n=sent: data_count(env) >= n, f"chunk {sent}")
            env.mark_blocks(4)
        await drv.wait_idle(ctx)
        assert ctx.get(dut.converged) == 1 and ctx.get(dut.rounds) == 2

    simulate(dut, env, scenario)
    check_common(env)
    assert env.summary() == (full_pass(LAYOUT) + [("ROUND_END", 0, LAYOUT.n_blocks, 1)]
                             + [block(LAYOUT, 4), ("ROUND_END", 1, 1, 1)]
                             + [block(LAYOUT, 4), ("ROUND_END", 2, 1, 1)])


def test_stop_inside_round0_then_residual_finishes_the_pass():
    """``stop`` during round 0 ends it after the chunk in flight (no ROUND_END); the
    residual then sends the rest of the pass, every block dirtied since round 0 began,
    and the CSR/MSI-X/PBA words."""
    dut = make()
    env = CopierEnv(dut, random.Random(4), backpressure=0.3, dma_gap=0.3)

    async def scenario(ctx, drv):
        await drv.start(ctx, CopyMode.PRECOPY)
        await drv.until(ctx, lambda: len(env.beats) >= 1, "the first header beat")
        env.mark_blocks(0, 4)  # block 0 was sent already, block 4 not yet
        await drv.stop_when(ctx, lambda: True, "stop")
        assert data_count(env) == 1, "stop must end round 0 after the chunk in flight"
        assert ctx.get(dut.converged) == 0
        assert ctx.get(dut.initial_left) == LAYOUT.image_words - CHUNK
        assert ctx.get(dut.words_sent) == CHUNK
        await drv.start(ctx, CopyMode.RESIDUAL, stop=True)  # as the engine does
        await drv.wait_idle(ctx)
        assert ctx.get(dut.words_sent) == (LAYOUT.image_words + 8 + 8
                                           + LAYOUT.meta_words)

    simulate(dut, env, scenario)
    check_common(env)
    assert env.summary() == ([("DATA", 0, CHUNK)] + full_pass(LAYOUT, CHUNK)
                             + [block(LAYOUT, 0), block(LAYOUT, 4), meta(LAYOUT)])
    env.apply_state_data()
    assert env.dst == env.src


def test_stop_in_a_dirty_round_stops_between_bitmap_words():
    """With two bitmap words, a stop while word 0's blocks go out ends the round after
    them: word 1's block is not scanned (still dirty) and the residual sends it."""
    dut = make(FINE, threshold=0, max_rounds=8)
    env = CopierEnv(dut, random.Random(5))

    async def scenario(ctx, drv):
        await drv.start(ctx, CopyMode.PRECOPY)
        await drv.until(ctx, lambda: data_count(env) >= 1, "the first chunk")
        env.mark_blocks(3, 7, 40)
        await drv.stop_when(ctx, lambda: data_count(env) >= 4, "round 1's first block")
        assert ctx.get(dut.converged) == 0
        assert env.bitmap == {40}
        await drv.start(ctx, CopyMode.RESIDUAL, stop=True)
        await drv.wait_idle(ctx)

    simulate(dut, env, scenario)
    check_common(env)
    assert env.summary() == (full_pass(FINE) + [("ROUND_END", 0, FINE.n_blocks, 3)]
                             + [block(FINE, 3), block(FINE, 7)]
                             + [block(FINE, 40), meta(FINE)])
    assert env.bitmap == set()
    env.apply_state_data()
    assert env.dst == env.src


def test_residual_after_convergence_sends_dirty_blocks_and_metadata():
    dut = make(threshold=2)
    env = CopierEnv(dut, random.Random(6), backpressure=0.5)

    async def scenario(ctx, drv):
        await drv.start(ctx, CopyMode.PRECOPY)
        await drv.wait_idle(ctx)
        assert ctx.get(dut.converged)
        env.mark_blocks(5, 1)
        await ctx.tick()
        await drv.start(ctx, CopyMode.RESIDUAL)
        await drv.wait_idle(ctx)
        # RESIDUAL continues the migration's statistics
        assert ctx.get(dut.converged) == 1 and ctx.get(dut.rounds) == 0
        assert ctx.get(dut.words_sent) == LAYOUT.image_words + 8 + 5 + LAYOUT.meta_words

    simulate(dut, env, scenario)
    check_common(env)
    assert env.summary() == (full_pass(LAYOUT) + [("ROUND_END", 0, LAYOUT.n_blocks, 0)]
                             + [block(LAYOUT, 1), block(LAYOUT, 5), meta(LAYOUT)])


def test_full_mode_sends_the_image_once_and_leaves_the_bitmap_alone():
    dut = make()
    env = CopierEnv(dut, random.Random(7), backpressure=0.2, dma_gap=0.2)

    async def scenario(ctx, drv):
        env.mark_blocks(2)
        await ctx.tick()
        await drv.start(ctx, CopyMode.FULL)
        await drv.wait_idle(ctx)
        assert ctx.get(dut.words_sent) == LAYOUT.image_words
        assert ctx.get(dut.rounds) == 0 and ctx.get(dut.converged) == 0

    simulate(dut, env, scenario)
    check_common(env)
    assert env.summary() == full_pass(LAYOUT)
    assert env.clears == 0 and env.dirty_reads == [] and env.bitmap == {2}


def test_control_messages_wait_for_idle_and_never_interleave():
    dut = make()
    env = CopierEnv(dut, random.Random(8), backpressure=0.4)

    async def scenario(ctx, drv):
        await drv.send_msg(ctx, MsgType.BEGIN, LAYOUT.image_words)
        await drv.wait_idle(ctx)
        await drv.start(ctx, CopyMode.FULL)
        # offered while busy: taken only after the copy
        await drv.send_msg(ctx, MsgType.ABORT, 0, Reason.REQUESTED)
        assert data_count(env) == len(full_pass(LAYOUT))
        await drv.send_msg(ctx, MsgType.SWITCHOVER, 0xDEAD_BEEF)
        await drv.wait_idle(ctx)

    simulate(dut, env, scenario)
    check_common(env)
    assert env.summary() == ([("BEGIN", LAYOUT.image_words)] + full_pass(LAYOUT)
                             + [("ABORT", 0), ("SWITCHOVER", 0xDEAD_BEEF)])
    abort = env.messages[-2]
    assert abort[0] == pack_header(MsgType.ABORT, VF, 0, Reason.REQUESTED)
    assert [last for _, last in env.beats[-2:]] == [0, 1]


def test_crc_beat_passes_through_unchanged():
    """The copier forwards the DMA's CRC beat; it neither recomputes nor fixes it."""
    dut = make()
    env = CopierEnv(dut, random.Random(9), corrupt_crc={1})

    async def scenario(ctx, drv):
        await drv.start(ctx, CopyMode.FULL)
        await drv.wait_idle(ctx)

    simulate(dut, env, scenario)
    assert [words[-1] for words in env.messages] == env.crc_sent
    good, bad = env.messages[0], env.messages[1]
    assert good[-1] == crc32(good[2:-1])
    assert bad[-1] == crc32(bad[2:-1]) ^ 0x5A5A_0001
    for words in env.messages:  # header length matches the payload
        assert unpack_header(words[0])["length"] == len(words) - 3


def test_dma_error_is_sticky_until_the_next_start():
    """A chunk whose status reports an error sets ``dma_error`` until a new migration
    starts (the model sends the chunk's beats and then an error status)."""
    dut = make()
    env = CopierEnv(dut, random.Random(10), error_status={1})

    async def scenario(ctx, drv):
        await drv.start(ctx, CopyMode.FULL)
        await drv.until(ctx, lambda: ctx.get(dut.dma_error), "dma_error", limit=2000)
        await drv.wait_idle(ctx)
        assert ctx.get(dut.dma_error) == 1
        await drv.start(ctx, CopyMode.RESIDUAL)
        await drv.wait_idle(ctx)
        assert ctx.get(dut.dma_error) == 1, "RESIDUAL continues the migration"
        env.error_status.clear()
        await drv.start(ctx, CopyMode.FULL)
        assert ctx.get(dut.dma_error) == 0, "a new migration starts clean"
        await drv.wait_idle(ctx)
        assert ctx.get(dut.dma_error) == 0

    simulate(dut, env, scenario)
    assert env.summary()[:3] == full_pass(LAYOUT)


def test_a_refused_read_descriptor_does_not_hang_the_copier():
    dut = make()
    env = CopierEnv(dut, random.Random(10), bounds_error={1})

    async def scenario(ctx, drv):
        await drv.start(ctx, CopyMode.FULL)
        await drv.wait_idle(ctx, limit=500)
        assert ctx.get(dut.dma_error) == 1

    simulate(dut, env, scenario)


@pytest.mark.parametrize("seed,layout", [(11, LAYOUT), (12, FINE), (13, LAYOUT), (14, FINE)])
def test_random_writes_during_precopy_then_stop_copy_leave_an_identical_image(seed, layout):
    """VM writes land anywhere at any time during pre-copy; the stop comes at a random
    moment (maybe inside round 0); writes end there (the VF is stopped), and after the
    residual the target image equals the source image word for word."""
    rng = random.Random(seed)
    print(f"seed {seed}")
    dut = make(layout, chunk=rng.choice([5, 16, 45]), threshold=rng.randint(0, 3),
               max_rounds=rng.randint(1, 4))
    env = CopierEnv(dut, rng, backpressure=0.3, dma_gap=0.2, write_prob=0.08)
    stop_after = rng.randint(5, 300)

    async def scenario(ctx, drv):
        await drv.start(ctx, CopyMode.PRECOPY)
        for _ in range(stop_after):
            await ctx.tick()
        await drv.stop_when(ctx, lambda: True, "stop")
        env.writes_enabled = False
        await drv.start(ctx, CopyMode.RESIDUAL, stop=True)
        await drv.wait_idle(ctx, limit=20_000)

    simulate(dut, env, scenario)
    check_common(env)
    env.apply_state_data()
    assert env.dst == env.src
    assert env.summary()[-1] == meta(layout)
