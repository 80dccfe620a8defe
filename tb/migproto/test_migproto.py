"""cocotb tests of the migration-protocol codec on the generated Verilog of MigProtoHarness.

The scoreboard predicts the decoder's outputs with ``model.protocol.classify``: each
well-formed message comes out as its header record followed by the words after ``arg``;
each malformed one only as a ``malformed`` event and a count under its reason — any beat of
it on ``header``/``payload`` shows up as a mismatch in the trace.  The encoder's output is
compared with ``Message.to_words``.  Each test seeds its generator from its seed (logged;
tb/common/seeds.py), which cocotb derives from ``COCOTB_RANDOM_SEED`` and the test's name,
so ``VFMIG_SEED`` and the test name reproduce a run.
"""

from __future__ import annotations

import json
import random
from collections import Counter

import cocotb
from amaranth.lib import data
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge

from hdl.formats import ChunkBeat
from hdl.migproto import malformed_event_layout, message_header_layout
from model.protocol import HEADER_FIELDS, Malformed, Message, MsgType, Reason, classify
from model.protocol_vectors import DEFAULT_OUT
from tb.common.runner import bench_matrix, run_tests
from tb.common.seeds import bench_seed, generator_seeds
from tb.common.streams import StreamDriver, StreamMonitor, unpack
from tb.migproto import HARNESS_PARAMETERS, build_harness, random_message, random_valid

BEAT = data.Layout.cast(ChunkBeat)
HEADER = message_header_layout()
EVENT = malformed_event_layout()
N_VFS = HARNESS_PARAMETERS["n_vfs"]
MAX_CHUNK = HARNESS_PARAMETERS["max_chunk_words"]
COUNTER_BITS = HARNESS_PARAMETERS["counter_bits"]
CLOCK_NS = 10
TIMEOUT_US = 2000  # 200k cycles, ~10x the slowest test: a stuck DUT fails, it does not hang


def _beats(words: list[int]) -> list[dict]:
    return [{"data": w, "last": int(i == len(words) - 1)} for i, w in enumerate(words)]


def _seeded(dut) -> random.Random:
    return random.Random(generator_seeds(dut._log, 1)[0])


class Scoreboard:
    """The decoder's outputs the model predicts for the messages sent so far."""

    def __init__(self):
        self.trace: list = []
        self.events: list = []
        self.counts: Counter = Counter()

    def add(self, words: list[int]) -> None:
        verdict, msg = classify(words, N_VFS, MAX_CHUNK)
        head = {name: (words[0] >> lsb) & ((1 << width) - 1)
                for name, (lsb, width) in HEADER_FIELDS.items()}
        if verdict == Malformed.NONE:
            self.trace.append(("H", {**head, "arg": msg.arg}))
            self.trace += [("P", b) for b in _beats(words[2:])]
        else:
            self.events.append({"valid": 1, "reason": int(verdict), "type": head["type"],
                                "vf": head["vf"]})
            self.counts[verdict] += 1
            self.counts[Malformed.NONE] += 1

    def pulse_unexpected(self) -> None:
        self.counts[Malformed.UNEXPECTED] += 1
        self.counts[Malformed.NONE] += 1


class TB:
    """Drives the harness: decoder input with idle cycles, both decoder outputs and the
    encoder output with random backpressure, a watcher for ``malformed`` events."""

    def __init__(self, dut, rng: random.Random, idle: float = 0.0, backpressure: float = 0.0):
        self.dut, self.rng = dut, rng
        cocotb.start_soon(Clock(dut.clk, CLOCK_NS, unit="ns").start())
        dut.unexpected.value = 0
        self.rx = StreamDriver(dut, "rx", dut.clk, BEAT, idle_prob=idle, rng=rng)
        self.enc_header = StreamDriver(dut, "enc_header", dut.clk, HEADER, idle_prob=idle,
                                       rng=random.Random(rng.getrandbits(32)))
        self.enc_payload = StreamDriver(dut, "enc_payload", dut.clk, None, idle_prob=idle,
                                        rng=random.Random(rng.getrandbits(32)))
        self.trace: list = []
        self.events: list = []
        self.header = StreamMonitor(dut, "header", dut.clk, HEADER, backpressure_prob=backpressure,
                                    rng=random.Random(rng.getrandbits(32)),
                                    callback=lambda h: self.trace.append(("H", h)))
        self.payload = StreamMonitor(dut, "payload", dut.clk, BEAT,
                                     backpressure_prob=backpressure,
                                     rng=random.Random(rng.getrandbits(32)),
                                     callback=lambda b: self.trace.append(("P", b)))
        self.tx = StreamMonitor(dut, "tx", dut.clk, BEAT, backpressure_prob=backpressure,
                                rng=random.Random(rng.getrandbits(32)))
        for name in ("rx", "enc_header", "enc_payload"):  # no X into the DUT (Icarus)
            getattr(dut, f"{name}__payload").value = 0

    async def _watch_events(self) -> None:
        # the current cycle first: waiting for the next edge missed the event of a one-word
        # message accepted in the first cycle of traffic (a nightly seed found it)
        while True:
            await ReadOnly()
            event = unpack(EVENT, int(self.dut.malformed.value))
            if event["valid"]:
                self.events.append(event)
            await RisingEdge(self.dut.clk)

    async def reset(self) -> None:
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 3)
        self.dut.rst.value = 0
        await RisingEdge(self.dut.clk)
        cocotb.start_soon(self._watch_events())

    async def send(self, words: list[int]) -> None:
        for beat in _beats(words):
            await self.rx.send(beat)

    async def pulse_unexpected(self) -> None:
        self.dut.unexpected.value = 1
        await RisingEdge(self.dut.clk)
        self.dut.unexpected.value = 0

    async def wait_for(self, done, limit: int) -> None:
        for _ in range(limit):
            if done():
                break
            await RisingEdge(self.dut.clk)
        await ClockCycles(self.dut.clk, 16)  # anything extra would arrive now

    def counts(self) -> dict:
        value = int(self.dut.counts.value)
        mask = (1 << COUNTER_BITS) - 1
        return {r: value >> (COUNTER_BITS * int(r)) & mask for r in Malformed}

    def check_decoder(self, board: Scoreboard) -> None:
        assert len(self.trace) == len(board.trace), \
            f"{len(self.trace)} decoder outputs, the model predicts {len(board.trace)}"
        for index, (got, want) in enumerate(zip(self.trace, board.trace, strict=True)):
            assert got == want, f"decoder output {index}: got {got}, model {want}"
        for index, (got, want) in enumerate(zip(self.events, board.events, strict=False)):
            assert got == want, f"malformed event {index}: got {got}, model {want}"
        assert len(self.events) == len(board.events), \
            f"{len(self.events)} malformed events, the model predicts {len(board.events)}"
        assert self.counts() == {r: board.counts[r] for r in Malformed}


@cocotb.test(timeout_time=TIMEOUT_US, timeout_unit="us")
@cocotb.parametrize(idle=[0.0, 0.3], backpressure=[0.0, 0.5])
async def decoder_random(dut, idle: float, backpressure: float):
    """Random valid and malformed messages, idle cycles and backpressure, and the
    engine's ``unexpected`` pulses: every output and every counter as the model says."""
    rng = _seeded(dut)
    tb = TB(dut, rng, idle, backpressure)
    await tb.reset()
    board = Scoreboard()
    messages = [random_message(rng, N_VFS, MAX_CHUNK) for _ in range(250)]
    for words in messages:
        board.add(words)
        await tb.send(words)
        if rng.random() < 0.05:
            board.pulse_unexpected()
            await tb.pulse_unexpected()
    await tb.wait_for(lambda: len(tb.trace) >= len(board.trace)
                      and len(tb.events) >= len(board.events), 20 * sum(map(len, messages)))
    dropped = Counter(Malformed(e["reason"]).name for e in board.events)
    dut._log.info(f"{len(messages)} messages, dropped by reason: {dict(dropped)}")
    assert set(dropped) == {r.name for r in Malformed} - {"NONE", "UNEXPECTED"}, \
        "the random mix should hit every reason the decoder detects"
    tb.check_decoder(board)


@cocotb.test(timeout_time=TIMEOUT_US, timeout_unit="us")
async def decoder_vectors(dut):
    """The shared vectors (tests/vectors/protocol_vectors.json) through the decoder, in a
    seeded order that puts good messages after malformed ones (nothing may be left behind)."""
    rng = _seeded(dut)
    tb = TB(dut, rng, idle=0.2, backpressure=0.3)
    await tb.reset()
    board = Scoreboard()
    vectors = json.loads(DEFAULT_OUT.read_text())["vectors"]
    rng.shuffle(vectors)
    for vector in vectors:
        words = [int(w, 16) for w in vector["words"]]
        board.add(words)
        await tb.send(words)
    await tb.wait_for(lambda: len(tb.trace) >= len(board.trace)
                      and len(tb.events) >= len(board.events), 10_000)
    tb.check_decoder(board)
    assert [Malformed(e["reason"]).name for e in tb.events] == \
        [v["malformed"] for v in vectors if v["malformed"] != "NONE"]


async def _encode(tb: TB, messages: list[Message]) -> None:
    async def headers():
        for msg in messages:
            await tb.enc_header.send({"type": int(msg.type), "reason": int(msg.reason),
                                      "vf": msg.vf, "length": len(msg.payload), "arg": msg.arg})

    async def payloads():
        for msg in messages:
            for word in msg.payload:
                await tb.enc_payload.send(word)

    header_task = cocotb.start_soon(headers())
    await payloads()
    await header_task
    expected = [b for msg in messages for b in _beats(msg.to_words())]
    await tb.wait_for(lambda: tb.tx.count >= len(expected), 20 * len(expected))
    assert list(tb.tx.beats) == expected


@cocotb.test(timeout_time=TIMEOUT_US, timeout_unit="us")
@cocotb.parametrize(idle=[0.0, 0.3], backpressure=[0.0, 0.5])
async def encoder_random(dut, idle: float, backpressure: float):
    """Random messages (every type, edge lengths) framed exactly as Message.to_words."""
    rng = _seeded(dut)
    tb = TB(dut, rng, idle, backpressure)
    await tb.reset()
    messages = [random_valid(rng, N_VFS, MAX_CHUNK) for _ in range(120)]
    # the encoder frames what it is given, including what a decoder would refuse
    messages += [Message(MsgType.STATE_DATA, 255, 7), Message(MsgType.COMMIT, 1, 0,
                                                              Reason.PROTOCOL, [1, 2])]
    await _encode(tb, messages)


@cocotb.test(timeout_time=TIMEOUT_US, timeout_unit="us")
async def encoder_vectors(dut):
    """Every vector that is a model encoding, through the encoder."""
    rng = _seeded(dut)
    tb = TB(dut, rng, idle=0.2, backpressure=0.3)
    await tb.reset()
    vectors = json.loads(DEFAULT_OUT.read_text())["vectors"]
    messages = [Message(MsgType(v["message"]["type"]), v["message"]["vf"],
                        int(v["message"]["arg"], 16), Reason(v["message"]["reason"]),
                        [int(w, 16) for w in v["message"]["payload"]])
                for v in vectors if v["message"] is not None]
    await _encode(tb, messages)


# ---------------------------------------------------------------- pytest entry
# pytest entry: the cocotb tests of tb/migproto (codec harness) on Verilator and Icarus.

SEED = bench_seed(20240604)   # VFMIG_SEED overrides it


@bench_matrix()
def test_cocotb_migproto(sim):
    run_tests(sim, "migproto_harness", build_harness, __name__,
              parameters=HARNESS_PARAMETERS, seed=SEED)
