# amaranth: UnusedElaboratable=no
"""hdl/register_slice.py in amaranth.sim: every beat once and in order under random
valid and ready, one cycle of latency, and no path from ``o.ready`` to ``i.ready``."""

from __future__ import annotations

import random

import pytest
from amaranth.lib import data

from hdl.register_slice import RegisterSlice
from tests.hdl.simutil import run_sim, stream_sink, stream_source

LAYOUT = data.StructLayout({"word": 16, "tag": 4})


def run(words: list[int], rng: random.Random, idle: float, backpressure: float):
    """(accept cycle of each input beat, [(cycle, fields)] of each output beat)."""
    dut = RegisterSlice(LAYOUT)
    sent, got = [], []
    items = [{"word": word, "tag": word & 0xF} for word in words]
    run_sim(dut, stream_source(dut.i, items, rng, idle, sent),
            stream_sink(dut.o, got, rng, backpressure, len(items)))
    return sent, got


@pytest.mark.parametrize(("idle", "backpressure"), [(0.0, 0.0), (0.3, 0.5), (0.0, 0.8)])
def test_every_beat_once_in_order_a_cycle_later(idle, backpressure):
    rng = random.Random(7)
    words = [rng.getrandbits(16) for _ in range(200)]
    sent, got = run(words, rng, idle, backpressure)
    assert [beat["word"] for _, beat in got] == words      # and no extra beat after them
    # a beat leaves at the earliest the cycle after it was taken
    delays = [out - taken for taken, (out, _) in zip(sent, got, strict=True)]
    assert min(delays) >= 1
    if idle == backpressure == 0.0:
        assert delays == [1] * len(words)


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
