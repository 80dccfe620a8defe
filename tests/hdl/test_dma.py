# amaranth: UnusedElaboratable=no
"""hdl/dma.py in amaranth.sim, with a Python model of the VF unit's state-access port.

Expectations come from model.protocol.crc32 and from the memory the test filled itself;
the port model also records every read and write so stray accesses fail the test.
"""

from __future__ import annotations

import random

import pytest
from amaranth.sim import Simulator

from hdl.dma import DMA
from hdl.formats import bits_for
from model.protocol import crc32
from model.state import ImageLayout
from tests.hdl.simutil import stream_sink, stream_source

LAYOUT = ImageLayout(csr_words=8, msix_vectors=4, mem_words=100)  # 125 words, stride 128
N_SLOTS = 3          # not a power of two: slot 3 exists in the address but is refused
MAX_CHUNK = 64
IMAGE = LAYOUT.image_words
STRIDE = LAYOUT.stride
FLAT_WORDS = (1 << bits_for(N_SLOTS)) * STRIDE
LENGTH_MAX = (1 << (LAYOUT.addr_bits + 1)) - 1   # largest value of the descriptor fields


def flat(slot: int, offset: int) -> int:
    return slot * STRIDE + offset


def is_refused(desc: dict) -> bool:
    return (desc["slot"] >= N_SLOTS or desc["length"] == 0 or desc["length"] > MAX_CHUNK
            or desc["offset"] + desc["length"] > IMAGE)


def random_descriptor(rng: random.Random, slots=range(N_SLOTS), p_refused: float = 0.25,
                      long_prob: float = 0.1) -> dict:
    if rng.random() < p_refused:
        kind = rng.choice(["slot", "zero", "long", "past_end"])
        if kind == "slot":
            return {"slot": N_SLOTS, "offset": 0, "length": rng.randint(1, 8)}
        if kind == "zero":
            return {"slot": rng.choice(slots), "offset": rng.randint(0, IMAGE - 1), "length": 0}
        if kind == "long":
            return {"slot": rng.choice(slots), "offset": 0,
                    "length": rng.randint(MAX_CHUNK + 1, LENGTH_MAX)}
        length = rng.randint(1, MAX_CHUNK)
        return {"slot": rng.choice(slots), "offset": rng.randint(IMAGE - length + 1, LENGTH_MAX),
                "length": length}
    length = MAX_CHUNK if rng.random() < long_prob else rng.randint(1, 12)
    return {"slot": rng.choice(slots), "offset": rng.randint(0, IMAGE - length),
            "length": length}


class VFPortModel:
    """The VF unit's state-access port: read data the next cycle, writes always accepted.

    ``sa_rd_data`` carries a random poison value in cycles that answer no read."""

    def __init__(self, dut: DMA, rng: random.Random):
        self.dut, self.rng = dut, rng
        self.mem = {addr: rng.getrandbits(32) for addr in range(FLAT_WORDS)}
        self.reads: list[int] = []
        self.writes: list[tuple[int, int]] = []

    async def process(self, ctx):
        dut = self.dut
        async for _, _, rd_en, rd_addr, wr_en, wr_addr, wr_data in ctx.tick().sample(
                dut.sa_rd_en, dut.sa_rd_addr, dut.sa_wr_en, dut.sa_wr_addr, dut.sa_wr_data):
            if rd_en:
                self.reads.append(rd_addr)
                ctx.set(dut.sa_rd_data, self.mem[rd_addr])
            else:
                ctx.set(dut.sa_rd_data, self.rng.getrandbits(32))
            if wr_en:
                self.writes.append((wr_addr, wr_data))
                self.mem[wr_addr] = wr_data


def run(dut: DMA, port: VFPortModel, benches) -> None:
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_process(port.process)
    for bench in benches:
        sim.add_testbench(bench)
    sim.run()


def status(bounds=0, crc=0, length=0) -> dict:
    return {"bounds_error": bounds, "crc_error": crc, "length_error": length}


# ------------------------------------------------------------------------ read side

def read_benches(dut, rng, descs, idle, backpressure, result):
    expected_beats = sum(d["length"] + 1 for d in descs if not is_refused(d))
    result.update(desc_cycles=[], beats=[], done=[])
    return [
        stream_source(dut.rd_desc, descs, rng, idle, result["desc_cycles"]),
        stream_sink(dut.rd_data, result["beats"], rng, backpressure, expected_beats),
        stream_sink(dut.rd_done, result["done"], rng, backpressure, len(descs)),
    ]


def check_read(descs, mem_before: dict, port: VFPortModel, result) -> None:
    beats = [beat for _, beat in result["beats"]]
    expected_beats, expected_done, allowed = [], [], set()
    for desc in descs:
        if is_refused(desc):
            expected_done.append(status(bounds=1))
            continue
        words = [mem_before[flat(desc["slot"], desc["offset"] + i)]
                 for i in range(desc["length"])]
        allowed.update(flat(desc["slot"], desc["offset"] + i) for i in range(desc["length"]))
        expected_beats += [{"data": w, "last": 0} for w in words]
        expected_beats.append({"data": crc32(words), "last": 1})
        expected_done.append(status())
    assert beats == expected_beats
    assert [st for _, st in result["done"]] == expected_done
    # a chunk's status comes only after its CRC beat was accepted
    crc_cycles = iter(cycle for cycle, beat in result["beats"] if beat["last"])
    for desc, (done_cycle, _) in zip(descs, result["done"], strict=True):
        if not is_refused(desc):
            assert done_cycle > next(crc_cycles)
    assert set(port.reads) <= allowed, "read outside the accepted descriptors"
    assert len(port.reads) == sum(d["length"] for d in descs if not is_refused(d))
    assert port.writes == []


@pytest.mark.parametrize("seed,idle,backpressure", [
    (1, 0.0, 0.0), (2, 0.3, 0.3), (3, 0.1, 0.8), (4, 0.6, 0.1)])
def test_read_random(seed, idle, backpressure):
    rng = random.Random(seed)
    dut = DMA(LAYOUT, N_SLOTS, MAX_CHUNK)
    port = VFPortModel(dut, rng)
    mem_before = dict(port.mem)
    descs = [random_descriptor(rng) for _ in range(40)]
    result = {}
    run(dut, port, read_benches(dut, rng, descs, idle, backpressure, result))
    check_read(descs, mem_before, port, result)


def test_read_throughput():
    n, length = 16, 64
    rng = random.Random(5)
    dut = DMA(LAYOUT, N_SLOTS, MAX_CHUNK)
    port = VFPortModel(dut, rng)
    mem_before = dict(port.mem)
    descs = [{"slot": i % N_SLOTS, "offset": (7 * i) % (IMAGE - length + 1), "length": length}
             for i in range(n)]
    result = {}
    run(dut, port, read_benches(dut, rng, descs, 0.0, 0.0, result))
    check_read(descs, mem_before, port, result)
    cycles = result["beats"][-1][0] - result["desc_cycles"][0] + 1
    words_per_cycle = n * length / cycles
    print(f"read side: {n * length} words in {cycles} cycles = {words_per_cycle:.4f} words/cycle")
    assert words_per_cycle >= 0.95


# ----------------------------------------------------------------------- write side

def write_chunk(rng: random.Random, desc: dict, kind: str):
    """Beats of one chunk and (expected status, words the DMA must write)."""
    words = [rng.getrandbits(32) for _ in range(desc["length"])]
    if kind == "refused":
        beats = [{"data": rng.getrandbits(32), "last": 0} for _ in range(rng.randint(0, 5))]
        return beats + [{"data": rng.getrandbits(32), "last": 1}], status(bounds=1), []
    data_beats = [{"data": w, "last": 0} for w in words]
    if kind == "ok":
        return data_beats + [{"data": crc32(words), "last": 1}], status(), words
    if kind == "crc":
        bad = crc32(words) ^ (1 << rng.randrange(32))
        return data_beats + [{"data": bad, "last": 1}], status(crc=1), words
    if kind == "early":
        k = rng.randint(0, desc["length"] - 1)
        return (data_beats[:k] + [{"data": crc32(words[:k]), "last": 1}], status(length=1),
                words[:k])
    assert kind == "late"
    extra = [{"data": rng.getrandbits(32), "last": 0} for _ in range(rng.randint(0, 3))]
    return (data_beats + [{"data": crc32(words), "last": 0}] + extra
            + [{"data": rng.getrandbits(32), "last": 1}], status(length=1), words)


def write_plan(rng: random.Random, n: int, slots=range(N_SLOTS)):
    """Random descriptors, their beats, expected statuses and the expected memory writes."""
    descs, beats, expected_done, expected_writes = [], [], [], []
    for _ in range(n):
        desc = random_descriptor(rng, slots=slots, p_refused=0.2)
        kind = "refused" if is_refused(desc) else rng.choices(
            ["ok", "crc", "early", "late"], weights=[6, 1, 1, 1])[0]
        chunk, st, written = write_chunk(rng, desc, kind)
        descs.append(desc)
        beats += chunk
        expected_done.append(st)
        expected_writes += [(flat(desc["slot"], desc["offset"] + i), w)
                            for i, w in enumerate(written)]
    return descs, beats, expected_done, expected_writes


def write_benches(dut, rng, descs, beats, idle, backpressure, result):
    result.update(desc_cycles=[], beat_cycles=[], done=[])
    return [
        stream_source(dut.wr_desc, descs, rng, idle, result["desc_cycles"]),
        stream_source(dut.wr_data, beats, rng, idle, result["beat_cycles"]),
        stream_sink(dut.wr_done, result["done"], rng, backpressure, len(descs)),
    ]


@pytest.mark.parametrize("seed,idle,backpressure", [
    (11, 0.0, 0.0), (12, 0.3, 0.3), (13, 0.1, 0.8)])
def test_write_random(seed, idle, backpressure):
    rng = random.Random(seed)
    dut = DMA(LAYOUT, N_SLOTS, MAX_CHUNK)
    port = VFPortModel(dut, rng)
    expected_mem = dict(port.mem)
    descs, beats, expected_done, expected_writes = write_plan(rng, 40)
    for addr, word in expected_writes:
        expected_mem[addr] = word
    result = {}
    run(dut, port, write_benches(dut, rng, descs, beats, idle, backpressure, result))
    assert [st for _, st in result["done"]] == expected_done
    assert len(result["beat_cycles"]) == len(beats), "not every beat was consumed"
    assert port.writes == expected_writes
    assert port.mem == expected_mem
    assert port.reads == []


def test_write_refused_writes_nothing():
    rng = random.Random(21)
    dut = DMA(LAYOUT, N_SLOTS, MAX_CHUNK)
    port = VFPortModel(dut, rng)
    descs = [{"slot": N_SLOTS, "offset": 0, "length": 4},
             {"slot": 0, "offset": 0, "length": 0},
             {"slot": 1, "offset": 0, "length": MAX_CHUNK + 1},
             {"slot": 2, "offset": IMAGE - 3, "length": 4},
             {"slot": 0, "offset": IMAGE, "length": 1}]
    beats = []
    for _ in descs:
        words = [rng.getrandbits(32) for _ in range(4)]
        beats += [{"data": w, "last": 0} for w in words] + [{"data": crc32(words), "last": 1}]
    result = {}
    run(dut, port, write_benches(dut, rng, descs, beats, 0.2, 0.2, result))
    assert [st for _, st in result["done"]] == [status(bounds=1)] * len(descs)
    assert len(result["beat_cycles"]) == len(beats)
    assert port.writes == []


def test_write_throughput():
    n, length = 16, 64
    rng = random.Random(22)
    dut = DMA(LAYOUT, N_SLOTS, MAX_CHUNK)
    port = VFPortModel(dut, rng)
    descs, beats = [], []
    for i in range(n):
        descs.append({"slot": i % N_SLOTS, "offset": i % 8, "length": length})
        chunk, _, _ = write_chunk(rng, descs[-1], "ok")
        beats += chunk
    result = {}
    run(dut, port, write_benches(dut, rng, descs, beats, 0.0, 0.0, result))
    assert [st for _, st in result["done"]] == [status()] * n
    cycles = result["beat_cycles"][-1] - result["desc_cycles"][0] + 1
    words_per_cycle = n * length / cycles
    print(f"write side: {n * length} words in {cycles} cycles = {words_per_cycle:.4f} words/cycle")
    assert words_per_cycle >= 0.95


# ----------------------------------------------------------------------- both sides

def test_read_and_write_concurrently():
    rng = random.Random(31)
    dut = DMA(LAYOUT, N_SLOTS, MAX_CHUNK)
    port = VFPortModel(dut, rng)
    mem_before = dict(port.mem)
    # writes go to slot 0, reads to slots 1 and 2, so the expected data does not race
    wr_descs, beats, wr_expected, expected_writes = write_plan(rng, 25, slots=[0])
    rd_descs = [random_descriptor(rng, slots=[1, 2]) for _ in range(25)]
    rd_result, wr_result = {}, {}
    run(dut, port, read_benches(dut, rng, rd_descs, 0.2, 0.2, rd_result)
        + write_benches(dut, rng, wr_descs, beats, 0.2, 0.2, wr_result))
    assert [st for _, st in wr_result["done"]] == wr_expected
    assert port.writes == expected_writes
    port.writes = []  # check_read asserts the read side wrote nothing
    check_read(rd_descs, mem_before, port, rd_result)


# --------------------------------------------------------------------- constructor

def test_constructor_errors():
    with pytest.raises(TypeError, match=r"^DMA layout must be an ImageLayout, not 5$"):
        DMA(5, 2)
    with pytest.raises(TypeError, match=r"^DMA n_slots must be an integer, not 2.0$"):
        DMA(LAYOUT, 2.0)
    with pytest.raises(TypeError, match=r"^DMA n_slots must be an integer, not True$"):
        DMA(LAYOUT, True)
    with pytest.raises(ValueError, match=r"^DMA n_slots must be at least 1, not 0$"):
        DMA(LAYOUT, 0)
    with pytest.raises(TypeError, match=r"^DMA max_chunk_words must be an integer, not '8'$"):
        DMA(LAYOUT, 2, "8")
    with pytest.raises(ValueError, match=r"^DMA max_chunk_words must be at least 1, not -1$"):
        DMA(LAYOUT, 2, -1)


def test_signature_widths():
    dut = DMA(LAYOUT, N_SLOTS, MAX_CHUNK)
    assert len(dut.sa_rd_addr) == len(dut.sa_wr_addr) == 2 + LAYOUT.addr_bits
    assert len(dut.sa_rd_data) == len(dut.sa_wr_data) == 32
    one = DMA(LAYOUT, 1)
    assert len(one.sa_rd_addr) == 1 + LAYOUT.addr_bits   # bits_for(1) == 1
