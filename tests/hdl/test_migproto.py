# amaranth: UnusedElaboratable=no
"""The migration-protocol codec (hdl/migproto.py) against the shared vectors and the model.

The vectors (tests/vectors/protocol_vectors.json, from model/protocol_vectors.py) are
checked three ways: the model round-trips them, the HDL decoder reports exactly their
decoded fields or malformed reasons, and the HDL encoder produces exactly their words.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass, field

import pytest

from hdl.migproto import (
    HEADER_QUEUE_DEPTH,
    MigProtoDecoder,
    MigProtoEncoder,
    header_word_layout,
    message_header_layout,
)
from model.protocol import (
    HEADER_FIELDS,
    MAX_VFS,
    Malformed,
    Message,
    MsgType,
    Reason,
    classify,
    pack_header,
)
from model.protocol_vectors import (
    DEFAULT_OUT,
    VECTOR_MAX_CHUNK,
    VECTOR_N_VFS,
    build_document,
    render,
)
from tests.checks import assert_refused
from tests.hdl.simutil import run_sim

SEED = 20240604


def _load() -> dict:
    return json.loads(DEFAULT_OUT.read_text())


VECTORS = _load()["vectors"]


def _words(vector: dict) -> list[int]:
    return [int(w, 16) for w in vector["words"]]


def _message(fields: dict) -> Message:
    return Message(MsgType(fields["type"]), fields["vf"], int(fields["arg"], 16),
                   Reason(fields["reason"]), [int(w, 16) for w in fields["payload"]])


# ---------------------------------------------------------------- the vectors and the model
def test_vector_file_is_up_to_date():
    assert DEFAULT_OUT.read_text() == render(build_document()), \
        "tests/vectors/protocol_vectors.json is stale: run python -m model.protocol_vectors"


def test_vectors_cover_every_type_and_reason():
    good_types = {v["decoded"]["type"] for v in VECTORS if v["malformed"] == "NONE"}
    assert good_types == {int(t) for t in MsgType}
    reasons = {v["malformed"] for v in VECTORS}
    assert reasons == {r.name for r in Malformed} - {"UNEXPECTED"}
    lengths = {len(v["decoded"]["payload"]) for v in VECTORS
               if v["malformed"] == "NONE" and v["decoded"]["type"] == MsgType.STATE_DATA}
    assert {1, VECTOR_MAX_CHUNK} <= lengths


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["name"])
def test_model_round_trips_vector(vector):
    words = _words(vector)
    verdict, decoded = classify(words, VECTOR_N_VFS, VECTOR_MAX_CHUNK)
    assert verdict.name == vector["malformed"]
    if vector["message"] is not None:
        assert _message(vector["message"]).to_words() == words
    if verdict == Malformed.NONE:
        assert decoded == _message(vector["decoded"]) == Message.from_words(words)
        assert decoded.to_words() == words
        return
    assert vector["decoded"] is None
    # What the codec alone can see, it must refuse too.
    if verdict in (Malformed.TYPE, Malformed.REASON, Malformed.FRAMING, Malformed.CRC):
        with pytest.raises(ValueError):
            Message.from_words(words)


def test_classify_needs_a_word():
    with pytest.raises(ValueError, match="a message has at least one word"):
        classify([], 1, 1)


# ---------------------------------------------------------------- layouts and parameters
def test_header_layouts_follow_the_model():
    assert {name: (f.offset, f.width) for name, f in header_word_layout()} == HEADER_FIELDS
    rng = random.Random(SEED)
    for _ in range(50):
        fields = {name: rng.getrandbits(width) for name, (_, width) in HEADER_FIELDS.items()}
        arg = rng.getrandbits(32)
        word = pack_header(fields["type"], fields["vf"], fields["length"], fields["reason"])
        record = message_header_layout().const({**fields, "arg": arg}).as_value().value
        assert record == word | arg << 32


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"n_vfs": 0}, ValueError, f"n_vfs must be between 1 and {MAX_VFS}, not 0"),
    ({"n_vfs": MAX_VFS + 1}, ValueError,
     f"n_vfs must be between 1 and {MAX_VFS}, not {MAX_VFS + 1}"),
    ({"n_vfs": "8"}, TypeError, "n_vfs must be an integer, not '8'"),
    ({"max_chunk_words": 0}, ValueError, "max_chunk_words must be between 1 and 65535, not 0"),
    ({"max_chunk_words": 1 << 16}, ValueError,
     "max_chunk_words must be between 1 and 65535, not 65536"),
    ({"max_chunk_words": 2.0}, TypeError, "max_chunk_words must be an integer, not 2.0"),
    ({"buffer_words": 64}, ValueError, "buffer_words must be between 65 and 1048576, not 64"),
    ({"buffer_words": 96}, ValueError, "buffer_words must be a power of two, not 96"),
    ({"counter_bits": 0}, ValueError, "counter_bits must be between 1 and 64, not 0"),
    ({"counter_bits": True}, TypeError, "counter_bits must be an integer, not True"),
])
def test_decoder_rejects_bad_parameters(kwargs, error, message):
    args = {"n_vfs": 8, "max_chunk_words": 64, **kwargs}
    assert_refused(error, f"MigProtoDecoder {message}", MigProtoDecoder, **args)


def test_decoder_default_buffer_holds_two_messages():
    assert MigProtoDecoder(8, 64).buffer_words == 256   # 2 * 65 rounded up
    assert MigProtoDecoder(8, 63).buffer_words == 128
    assert MigProtoDecoder(8, 1).buffer_words == 4


# ---------------------------------------------------------------- decoder simulation
STALL_LIMIT = 2000  # cycles a stream may refuse a beat before the test calls it stuck


async def _put(ctx, stream, payload) -> None:
    """``stream_put`` that fails instead of hanging when the DUT never takes the beat."""
    ctx.set(stream.valid, 1)
    ctx.set(stream.payload, payload)
    for _ in range(STALL_LIMIT):
        _, _, ready = await ctx.tick().sample(stream.ready)
        if ready:
            ctx.set(stream.valid, 0)
            return
    raise AssertionError(f"stream stuck: beat {payload} not taken in {STALL_LIMIT} cycles")


def _beats(words: list[int]) -> list[dict]:
    return [{"data": w, "last": int(i == len(words) - 1)} for i, w in enumerate(words)]


def _header_fields(value) -> dict:
    return {name: int(getattr(value, name)) for name in ("type", "reason", "vf", "length",
                                                         "arg")}


@dataclass
class Expected:
    """The decoder's outputs predicted by the model for a sequence of messages."""
    trace: list = field(default_factory=list)    # ("H", fields) and ("P", data, last)
    events: list = field(default_factory=list)   # (reason, type, vf)
    counts: Counter = field(default_factory=Counter)

    def add(self, words: list[int], n_vfs: int, max_chunk: int) -> None:
        verdict, msg = classify(words, n_vfs, max_chunk)
        head = {name: (words[0] >> lsb) & ((1 << width) - 1)
                for name, (lsb, width) in HEADER_FIELDS.items()}
        if verdict == Malformed.NONE:
            self.trace.append(("H", {**head, "arg": msg.arg}))
            self.trace += [("P", b["data"], b["last"]) for b in _beats(words[2:])]
        else:
            self.events.append((int(verdict), head["type"], head["vf"]))
            self.counts[verdict] += 1
            self.counts[Malformed.NONE] += 1


def _decode(messages: list[list[int]], *, n_vfs=VECTOR_N_VFS, max_chunk=VECTOR_MAX_CHUNK,
            seed=SEED, idle=0.2, header_bp=0.3, payload_bp=0.3, buffer_words=None,
            unexpected_pulses=0):
    """Run the decoder over ``messages``; returns (trace, events, counts, cycles)."""
    dut = MigProtoDecoder(n_vfs, max_chunk, buffer_words=buffer_words)
    rng = random.Random(seed)
    trace, events, counts = [], [], {}
    expected_len = Expected()
    for words in messages:
        expected_len.add(words, n_vfs, max_chunk)
    cycles = [0]

    async def monitor(ctx):
        async for _clk, _rst, hv, hr, hp, pv, pr, pp, ev in ctx.tick().sample(
                dut.header.valid, dut.header.ready, dut.header.payload, dut.payload.valid,
                dut.payload.ready, dut.payload.payload, dut.malformed):
            if hv and hr:
                trace.append(("H", _header_fields(hp)))
            if pv and pr:
                trace.append(("P", int(pp.data), int(pp.last)))
            if ev.valid:
                events.append((int(ev.reason), int(ev.type), int(ev.vf)))
            ctx.set(dut.header.ready, rng.random() >= header_bp)
            ctx.set(dut.payload.ready, rng.random() >= payload_bp)

    async def drive(ctx):
        pulses = sorted(random.Random(seed + 1).sample(range(len(messages)), unexpected_pulses))
        for index, words in enumerate(messages):
            for beat in _beats(words):
                while idle and rng.random() < idle:
                    await ctx.tick()
                await _put(ctx, dut.rx, beat)
                cycles[0] += 1
            if index in pulses:
                ctx.set(dut.unexpected, 1)
                await ctx.tick()
                ctx.set(dut.unexpected, 0)
        for _ in range(400 + 4 * sum(map(len, messages))):
            if (len(trace) >= len(expected_len.trace)
                    and len(events) >= len(expected_len.events)):
                break
            await ctx.tick()
        await ctx.tick().repeat(8)   # anything extra would show up now
        counts.update({r: ctx.get(dut.counts[r]) for r in Malformed})

    run_sim(dut, drive, processes=[monitor])
    return trace, events, counts


def _check_decode(messages, trace, events, counts, n_vfs=VECTOR_N_VFS,
                  max_chunk=VECTOR_MAX_CHUNK, unexpected=0):
    expected = Expected()
    for words in messages:
        expected.add(words, n_vfs, max_chunk)
    expected.counts[Malformed.UNEXPECTED] += unexpected
    expected.counts[Malformed.NONE] += unexpected
    assert trace == expected.trace
    assert events == expected.events
    assert counts == {r: expected.counts[r] for r in Malformed}


@pytest.mark.parametrize("order", ["file", "shuffled"])
def test_decoder_matches_vectors_with_backpressure(order):
    """In file order, then shuffled so that good messages follow malformed ones (a dropped
    message must leave nothing behind in the buffer)."""
    vectors = list(VECTORS)
    if order == "shuffled":
        random.Random(SEED).shuffle(vectors)
    messages = [_words(v) for v in vectors]
    trace, events, counts = _decode(messages, unexpected_pulses=3)
    _check_decode(messages, trace, events, counts, unexpected=3)
    # each vector's verdict, in order, is what the JSON says
    assert [Malformed(r).name for r, _, _ in events] == \
        [v["malformed"] for v in vectors if v["malformed"] != "NONE"]


def test_decoder_small_buffer_and_heavy_backpressure():
    """A buffer of one maximum message, a slow consumer: stalls, never loses or mixes."""
    rng = random.Random(SEED + 5)
    max_chunk = 7
    messages = []
    for _ in range(40):
        n = rng.randint(1, max_chunk)
        msg = Message(MsgType.STATE_DATA, rng.randrange(4), rng.getrandbits(32),
                      payload=[rng.getrandbits(32) for _ in range(n)])
        words = msg.to_words()
        if rng.random() < 0.3:
            words[rng.randrange(2, len(words))] ^= 1 << rng.randrange(32)
        messages.append(words)
        messages.append(Message(MsgType.COMMIT, rng.randrange(4)).to_words())
    trace, events, counts = _decode(messages, n_vfs=4, max_chunk=max_chunk, buffer_words=8,
                                    idle=0.0, header_bp=0.7, payload_bp=0.7)
    _check_decode(messages, trace, events, counts, n_vfs=4, max_chunk=max_chunk)
    assert counts[Malformed.CRC] > 0


def test_decoder_sustains_a_word_per_cycle():
    """Back-to-back maximum STATE_DATA messages with an always-ready consumer."""
    rng = random.Random(SEED + 6)
    n = 8
    messages = [Message(MsgType.STATE_DATA, 1, 64 * i, payload=[rng.getrandbits(32)
                                                                  for _ in range(64)]).to_words()
                for i in range(n)]
    dut = MigProtoDecoder(8, 64)
    done = []

    async def drive(ctx):
        ctx.set(dut.header.ready, 1)
        ctx.set(dut.payload.ready, 1)
        start_stall = 0
        for words in messages:
            for beat in _beats(words):
                ctx.set(dut.rx.valid, 1)
                ctx.set(dut.rx.payload, beat)
                _, _, ready = await ctx.tick().sample(dut.rx.ready)
                while not ready:
                    start_stall += 1
                    _, _, ready = await ctx.tick().sample(dut.rx.ready)
        ctx.set(dut.rx.valid, 0)
        done.append(start_stall)

    run_sim(dut, drive)
    assert done == [0], "the decoder stalled the link with an always-ready consumer"


def test_decoder_header_queue_fills_then_stalls():
    """With nobody taking headers, exactly HEADER_QUEUE_DEPTH control messages fit."""
    dut = MigProtoDecoder(8, 4)
    accepted = []

    async def drive(ctx):
        for vf in range(HEADER_QUEUE_DEPTH + 2):
            for beat in _beats(Message(MsgType.ABORT_ACK, vf).to_words()):
                ctx.set(dut.rx.valid, 1)
                ctx.set(dut.rx.payload, beat)
                for _ in range(20):
                    _, _, ready = await ctx.tick().sample(dut.rx.ready)
                    if ready:
                        break
                else:
                    ctx.set(dut.rx.valid, 0)
                    return
            accepted.append(vf)

    run_sim(dut, drive)
    assert accepted == list(range(HEADER_QUEUE_DEPTH))


# ---------------------------------------------------------------- encoder simulation
def _encode(messages: list[Message], *, seed=SEED, idle=0.2, backpressure=0.3):
    dut = MigProtoEncoder()
    rng = random.Random(seed)
    beats = []
    expected_beats = sum(len(msg.to_words()) for msg in messages)

    async def monitor(ctx):
        async for _clk, _rst, valid, ready, payload in ctx.tick().sample(
                dut.tx.valid, dut.tx.ready, dut.tx.payload):
            if valid and ready:
                beats.append((int(payload.data), int(payload.last)))
            ctx.set(dut.tx.ready, rng.random() >= backpressure)

    async def headers(ctx):
        for msg in messages:
            while idle and rng.random() < idle:
                await ctx.tick()
            await _put(ctx, dut.header, {
                "type": int(msg.type), "reason": int(msg.reason), "vf": msg.vf,
                "length": len(msg.payload), "arg": msg.arg})

    async def payloads(ctx):
        for msg in messages:
            for word in msg.payload:
                while idle and rng.random() < idle:
                    await ctx.tick()
                await _put(ctx, dut.payload, word)
        for _ in range(200 + 4 * expected_beats):
            if len(beats) >= expected_beats:
                break
            await ctx.tick()
        await ctx.tick().repeat(8)

    run_sim(dut, headers, payloads, processes=[monitor])
    return beats


def test_encoder_matches_vectors_with_backpressure():
    messages = [_message(v["message"]) for v in VECTORS if v["message"] is not None]
    expected = [(b["data"], b["last"]) for msg in messages for b in _beats(msg.to_words())]
    assert _encode(messages) == expected


def test_encoder_streams_without_bubbles():
    rng = random.Random(SEED + 7)
    messages = [Message(MsgType.STATE_DATA, 2, i, payload=[rng.getrandbits(32)
                                                           for _ in range(rng.randint(0, 9))])
                for i in range(10)] + [Message(MsgType.COMMIT, 3), Message(MsgType.ABORT, 1)]
    expected = [(b["data"], b["last"]) for msg in messages for b in _beats(msg.to_words())]
    dut = MigProtoEncoder()
    beats = []

    async def bench(ctx):
        ctx.set(dut.tx.ready, 1)
        pending = list(messages)
        payload = [w for msg in messages for w in msg.payload]
        for _ in range(len(expected)):
            if pending:
                msg = pending[0]
                ctx.set(dut.header.valid, 1)
                ctx.set(dut.header.payload, {"type": int(msg.type), "reason": int(msg.reason),
                                             "vf": msg.vf, "length": len(msg.payload),
                                             "arg": msg.arg})
            ctx.set(dut.payload.valid, bool(payload))
            ctx.set(dut.payload.payload, payload[0] if payload else 0)
            _, _, tx, hr, pr = await ctx.tick().sample(dut.tx.payload, dut.header.ready,
                                                       dut.payload.ready)
            beats.append((int(tx.data), int(tx.last)))
            if pending and hr:
                pending.pop(0)
                if not pending:
                    ctx.set(dut.header.valid, 0)
            if payload and pr:
                payload.pop(0)

    run_sim(dut, bench)
    assert beats == expected   # one beat every cycle: no idle cycle anywhere

