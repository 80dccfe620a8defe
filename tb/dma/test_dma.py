"""cocotb tests of the state DMA on the generated Verilog of ``DMAHarness``.

The test keeps its own image of the harness memory (``TB.image``): every word it writes
through the write side, and reads are checked against it and against
``model.protocol.crc32``. Every test starts by filling all slots through the write side,
so no read ever returns memory the test did not write (Icarus memories start as X).

``bench_throughput`` streams 64 descriptors of 64 words with no idle or backpressure and,
when ``VFMIG_BENCH_OUT`` names a file, writes ``{"words_per_cycle": ...}`` there.
"""

from __future__ import annotations

import json
import os
import random

import cocotb
from amaranth.lib import data
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge
from cocotb.utils import get_sim_time

from hdl.formats import ChunkBeat, DmaStatus, bits_for, descriptor_layout
from model.protocol import crc32
from tb.common.runner import bench_matrix, run_tests
from tb.common.seeds import bench_seed, generator_seeds
from tb.common.streams import StreamDriver, StreamMonitor
from tb.dma.harness import (
    HARNESS_LAYOUT,
    HARNESS_MAX_CHUNK,
    HARNESS_PARAMETERS,
    HARNESS_SLOTS,
    dma_harness,
)

DESC = descriptor_layout(HARNESS_LAYOUT, HARNESS_SLOTS)
BEAT = data.Layout.cast(ChunkBeat)
STATUS = data.Layout.cast(DmaStatus)
IMAGE = HARNESS_LAYOUT.image_words
STRIDE = HARNESS_LAYOUT.stride
FIELD_MAX = (1 << (HARNESS_LAYOUT.addr_bits + 1)) - 1   # largest offset/length value
CLOCK_NS = 10
OK = {"bounds_error": 0, "crc_error": 0, "length_error": 0}
BOUNDS = {**OK, "bounds_error": 1}
CRC = {**OK, "crc_error": 1}
LENGTH = {**OK, "length_error": 1}

assert bits_for(HARNESS_SLOTS) == 2, "the tests address slot 3 as the refused slot"


def flat(slot: int, offset: int) -> int:
    return slot * STRIDE + offset


def is_refused(desc: dict) -> bool:
    return (desc["slot"] >= HARNESS_SLOTS or desc["length"] == 0
            or desc["length"] > HARNESS_MAX_CHUNK or desc["offset"] + desc["length"] > IMAGE)


def refused_descriptors(rng: random.Random) -> list[dict]:
    """One descriptor for each way of being refused."""
    length = rng.randint(1, HARNESS_MAX_CHUNK)
    return [
        {"slot": HARNESS_SLOTS, "offset": 0, "length": rng.randint(1, 8)},
        {"slot": rng.randrange(HARNESS_SLOTS), "offset": rng.randrange(IMAGE), "length": 0},
        {"slot": rng.randrange(HARNESS_SLOTS), "offset": 0,
         "length": rng.randint(HARNESS_MAX_CHUNK + 1, FIELD_MAX)},
        {"slot": rng.randrange(HARNESS_SLOTS), "offset": rng.randint(IMAGE - length + 1, FIELD_MAX),
         "length": length},
    ]


def random_descriptor(rng: random.Random, p_refused: float = 0.25) -> dict:
    if rng.random() < p_refused:
        return rng.choice(refused_descriptors(rng))
    length = rng.randint(1, HARNESS_MAX_CHUNK)
    return {"slot": rng.randrange(HARNESS_SLOTS), "offset": rng.randint(0, IMAGE - length),
            "length": length}


def data_beats(words) -> list[dict]:
    return [{"data": w, "last": 0} for w in words]


async def send_all(driver: StreamDriver, items, accept_times: list | None = None) -> None:
    for item in items:
        await driver.send(item)
        if accept_times is not None:
            accept_times.append(get_sim_time("ns"))


class TB:
    """Clock, reset, the six stream agents and the expected memory image."""

    def __init__(self, dut, idle: float = 0.0, backpressure: float = 0.0):
        self.dut = dut
        [self.seed] = generator_seeds(dut._log, 1, f"idle {idle:.2f}, "
                                                   f"backpressure {backpressure:.2f}")
        self.rng = random.Random(self.seed)
        cocotb.start_soon(Clock(dut.clk, CLOCK_NS, unit="ns").start())
        clk = dut.clk
        self.rd_desc = StreamDriver(dut, "rd_desc", clk, DESC, idle, self.rng)
        self.wr_desc = StreamDriver(dut, "wr_desc", clk, DESC, idle, self.rng)
        self.wr_data = StreamDriver(dut, "wr_data", clk, BEAT, idle, self.rng)
        self.rd_beats: list[tuple[float, dict]] = []   # (ReadOnly time, beat)
        self.rd_status: list[tuple[float, dict]] = []
        self.wr_status: list[dict] = []
        self.rd_data = StreamMonitor(dut, "rd_data", clk, BEAT, backpressure_prob=backpressure,
                                     rng=self.rng, callback=self._timed(self.rd_beats))
        self.rd_done = StreamMonitor(dut, "rd_done", clk, STATUS,
                                     backpressure_prob=backpressure, rng=self.rng,
                                     callback=self._timed(self.rd_status))
        self.wr_done = StreamMonitor(dut, "wr_done", clk, STATUS,
                                     backpressure_prob=backpressure, rng=self.rng,
                                     callback=self.wr_status.append)
        self.image: dict[int, int] = {}

    @staticmethod
    def _timed(out: list):
        return lambda beat: out.append((get_sim_time("ns"), beat))

    async def reset(self) -> None:
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 3)
        self.dut.rst.value = 0
        await RisingEdge(self.dut.clk)

    async def wait_until(self, condition, what: str, max_cycles: int = 50_000) -> None:
        for _ in range(max_cycles):
            if condition():
                return
            await RisingEdge(self.dut.clk)
        raise AssertionError(f"timed out after {max_cycles} cycles waiting for {what}")

    async def write(self, chunks: list[tuple[dict, list[dict], dict, list[int]]]) -> None:
        """Write ``(descriptor, beats, expected status, words it must write)`` chunks and
        check their statuses; the expected words go into the image."""
        first = len(self.wr_status)
        descs = cocotb.start_soon(send_all(self.wr_desc, [c[0] for c in chunks]))
        beats = cocotb.start_soon(send_all(self.wr_data, [b for c in chunks for b in c[1]]))
        await descs
        await beats
        await self.wait_until(lambda: len(self.wr_status) >= first + len(chunks),
                              f"{len(chunks)} write statuses")
        await ClockCycles(self.dut.clk, 5)   # an extra status would show up here
        assert self.wr_status[first:] == [c[2] for c in chunks]
        for desc, _, _, words in chunks:
            for i, word in enumerate(words):
                self.image[flat(desc["slot"], desc["offset"] + i)] = word

    def good_chunk(self, desc: dict):
        words = [self.rng.getrandbits(32) for _ in range(desc["length"])]
        return desc, data_beats(words) + [{"data": crc32(words), "last": 1}], OK, words

    async def fill(self) -> None:
        """Write every word of every slot's image with random data."""
        chunks = []
        for slot in range(HARNESS_SLOTS):
            for offset in range(0, IMAGE, HARNESS_MAX_CHUNK):
                length = min(HARNESS_MAX_CHUNK, IMAGE - offset)
                chunks.append(self.good_chunk({"slot": slot, "offset": offset,
                                               "length": length}))
        await self.write(chunks)

    async def read(self, descs: list[dict]) -> list[float]:
        """Read ``descs`` and check beats, CRCs and statuses against the image; returns
        the accept time of each descriptor."""
        first_beat, first_status = len(self.rd_beats), len(self.rd_status)
        expected_beats, expected_status = [], []
        for desc in descs:
            if is_refused(desc):
                expected_status.append(BOUNDS)
                continue
            words = [self.image[flat(desc["slot"], desc["offset"] + i)]
                     for i in range(desc["length"])]
            expected_beats += data_beats(words) + [{"data": crc32(words), "last": 1}]
            expected_status.append(OK)
        accepted: list[float] = []
        await send_all(self.rd_desc, descs, accepted)
        await self.wait_until(lambda: len(self.rd_status) >= first_status + len(descs),
                              f"{len(descs)} read statuses")
        await ClockCycles(self.dut.clk, 5)
        beats = self.rd_beats[first_beat:]
        statuses = self.rd_status[first_status:]
        assert [b for _, b in beats] == expected_beats
        assert [s for _, s in statuses] == expected_status
        crc_times = iter(t for t, b in beats if b["last"])
        for desc, (status_time, _) in zip(descs, statuses, strict=True):
            if not is_refused(desc):
                assert status_time > next(crc_times), "status before the chunk's CRC beat"
        return accepted

    async def read_everything(self) -> None:
        """Read back every slot's whole image and compare with the expected image."""
        await self.read([{"slot": slot, "offset": offset,
                          "length": min(HARNESS_MAX_CHUNK, IMAGE - offset)}
                         for slot in range(HARNESS_SLOTS)
                         for offset in range(0, IMAGE, HARNESS_MAX_CHUNK)])


@cocotb.test()
@cocotb.parametrize((("idle", "backpressure"), [(0.0, 0.0), (0.3, 0.5)]))
async def random_reads(dut, idle: float, backpressure: float):
    """Random read descriptors (a quarter refused) against what the write side stored."""
    tb = TB(dut, idle=idle, backpressure=backpressure)
    await tb.reset()
    await tb.fill()
    await tb.read([random_descriptor(tb.rng) for _ in range(40)])
    # a second round after overwriting random chunks, so reads see fresh data
    await tb.write([tb.good_chunk(random_descriptor(tb.rng, p_refused=0)) for _ in range(10)])
    await tb.read([random_descriptor(tb.rng) for _ in range(20)])


@cocotb.test()
async def bounds_errors(dut):
    """Refused descriptors: bounds status, no read beats, nothing written."""
    tb = TB(dut, idle=0.2, backpressure=0.2)
    await tb.reset()
    await tb.fill()
    chunks = []
    for desc in refused_descriptors(tb.rng) * 2:
        chunk_words = [tb.rng.getrandbits(32) for _ in range(max(1, min(8, desc["length"])))]
        beats = data_beats(chunk_words) + [{"data": crc32(chunk_words), "last": 1}]
        chunks.append((desc, beats, BOUNDS, []))
        chunks.append(tb.good_chunk(random_descriptor(tb.rng, p_refused=0)))
    await tb.write(chunks)
    await tb.read([d for c in chunks for d in (c[0], random_descriptor(tb.rng, p_refused=0))])
    await tb.read_everything()


@cocotb.test()
async def crc_and_length_errors(dut):
    """Corrupted CRC, early and late ``last``: the right status and exactly the right words
    written (data beats are written as they arrive; beats past the chunk are not)."""
    tb = TB(dut, idle=0.2, backpressure=0.3)
    await tb.reset()
    await tb.fill()
    chunks = []
    for _ in range(6):
        desc = random_descriptor(tb.rng, p_refused=0)
        words = [tb.rng.getrandbits(32) for _ in range(desc["length"])]
        kind = tb.rng.choice(["crc", "early", "late"])
        if kind == "crc":
            bad = crc32(words) ^ (1 << tb.rng.randrange(32))
            chunks.append((desc, data_beats(words) + [{"data": bad, "last": 1}], CRC, words))
        elif kind == "early":
            k = tb.rng.randrange(desc["length"])
            chunks.append((desc, data_beats(words[:k]) + [{"data": crc32(words[:k]), "last": 1}],
                           LENGTH, words[:k]))
        else:
            extra = data_beats(tb.rng.getrandbits(32) for _ in range(tb.rng.randint(0, 3)))
            chunks.append((desc, data_beats(words) + [{"data": crc32(words), "last": 0}] + extra
                           + [{"data": 0, "last": 1}], LENGTH, words))
        chunks.append(tb.good_chunk(random_descriptor(tb.rng, p_refused=0)))
    await tb.write(chunks)
    await tb.read_everything()


@cocotb.test()
async def bench_throughput(dut):
    """64 back-to-back 64-word read descriptors, no idle or backpressure: data words per
    cycle from the first descriptor accepted to the last beat accepted."""
    n, length = 64, 64
    tb = TB(dut)
    await tb.reset()
    await tb.fill()
    descs = [{"slot": i % HARNESS_SLOTS, "offset": (13 * i) % (IMAGE - length + 1),
              "length": length} for i in range(n)]
    accepted = await tb.read(descs)
    # accept times are the edge closing the accept cycle; beat times are in the cycle
    last_beat_edge = tb.rd_beats[-1][0] + CLOCK_NS
    cycles = round((last_beat_edge - accepted[0]) / CLOCK_NS) + 1
    words_per_cycle = n * length / cycles
    dut._log.info("read throughput: %d words in %d cycles = %.4f words/cycle",
                  n * length, cycles, words_per_cycle)
    out = os.environ.get("VFMIG_BENCH_OUT")
    if out:
        with open(out, "w") as f:
            json.dump({"words_per_cycle": words_per_cycle, "words": n * length,
                       "cycles": cycles, "descriptors": n, "chunk_words": length}, f)
            f.write("\n")
    assert words_per_cycle >= 0.95


# ---------------------------------------------------------------- pytest entry
# pytest entry: the cocotb tests of tb/dma on Verilator and Icarus.

SEED = bench_seed(20240601)   # VFMIG_SEED overrides it


@bench_matrix()
def test_cocotb_dma(sim):
    run_tests(sim, "dma_harness", dma_harness, __name__, parameters=HARNESS_PARAMETERS,
              seed=SEED)
