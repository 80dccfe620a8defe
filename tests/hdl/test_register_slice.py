# amaranth: UnusedElaboratable=no
"""hdl/register_slice.py in amaranth.sim: every beat once and in order under random
valid and ready, one cycle of latency, and no path from ``o.ready`` to ``i.ready``."""

from __future__ import annotations

import random

import pytest
from amaranth.lib import data

from hdl.register_slice import RegisterSlice
from tests.hdl.simutil import run_sim

LAYOUT = data.StructLayout({"word": 16, "tag": 4})


def run(words: list[int], rng: random.Random, idle: float, backpressure: float):
    dut = RegisterSlice(LAYOUT)
    sent: list[tuple[int, int]] = []       # (cycle, word) of each accepted input beat
    got: list[tuple[int, int]] = []        # (cycle, word) of each accepted output beat

    async def source(ctx):
        cycle = 0
        for word in words:
            while rng.random() < idle:
                await ctx.tick()
                cycle += 1
            ctx.set(dut.i.payload, {"word": word, "tag": word & 0xF})
            ctx.set(dut.i.valid, 1)
            while True:
                _, _, ready = await ctx.tick().sample(dut.i.ready)
                cycle += 1
                if ready:
                    sent.append((cycle - 1, word))
                    break
            ctx.set(dut.i.valid, 0)

    async def sink(ctx):
        cycle = 0
        while len(got) < len(words):
            ctx.set(dut.o.ready, int(rng.random() >= backpressure))
            _, _, valid, ready, payload = await ctx.tick().sample(
                dut.o.valid, dut.o.ready, dut.o.payload)
            if valid and ready:
                got.append((cycle, payload.word))
            cycle += 1

    run_sim(dut, source, sink)
    return sent, got


@pytest.mark.parametrize(("idle", "backpressure"), [(0.0, 0.0), (0.3, 0.5), (0.0, 0.8)])
def test_every_beat_once_in_order_a_cycle_later(idle, backpressure):
    rng = random.Random(7)
    words = [rng.getrandbits(16) for _ in range(200)]
    sent, got = run(words, rng, idle, backpressure)
    assert [w for _, w in got] == words
    # a beat leaves at the earliest the cycle after it was taken
    assert all(out > taken for (taken, _), (out, _) in zip(sent, got, strict=True))
    if idle == backpressure == 0.0:
        assert [out - taken for (taken, _), (out, _) in zip(sent, got, strict=True)] == \
            [1] * len(words)


def test_ready_does_not_follow_the_sink_in_the_same_cycle():
    """With the stage full, ``i.ready`` stays 0 in the cycle the sink takes the beat: the
    sink's ready reaches the source only through the register."""
    dut = RegisterSlice(LAYOUT)
    seen = []

    async def bench(ctx):
        ctx.set(dut.i.valid, 1)
        ctx.set(dut.i.payload, {"word": 0x1234, "tag": 1})
        await ctx.tick()                   # the stage takes the beat
        ctx.set(dut.i.valid, 0)
        ctx.set(dut.o.ready, 1)
        seen.append((ctx.get(dut.o.valid), ctx.get(dut.i.ready)))
        await ctx.tick()                   # the sink takes it
        seen.append((ctx.get(dut.o.valid), ctx.get(dut.i.ready)))

    run_sim(dut, bench)
    assert seen == [(1, 0), (0, 1)]


def test_a_layout_is_required():
    with pytest.raises(TypeError, match="RegisterSlice layout must be an amaranth data.Layout"):
        RegisterSlice(16)
