"""Small helpers for amaranth.sim async testbenches (Glasgow-style stream put/get)."""

from __future__ import annotations

import random

from amaranth.sim import Simulator


async def stream_put(ctx, stream, payload) -> None:
    """Offer one payload and wait until it is accepted."""
    ctx.set(stream.valid, 1)
    ctx.set(stream.payload, payload)
    await ctx.tick().until(stream.ready)
    ctx.set(stream.valid, 0)


async def stream_get(ctx, stream):
    """Wait for one payload and accept it; returns the payload value."""
    ctx.set(stream.ready, 1)
    (payload,) = await ctx.tick().sample(stream.payload).until(stream.valid)
    ctx.set(stream.ready, 0)
    return payload


def stream_source(stream, items, rng: random.Random, idle: float, accepted: list,
                  max_cycles: int = 20_000):
    """Offer ``items`` in order with random idle cycles; log each accept cycle. Gives up
    after ``max_cycles`` so a stalled DUT fails the test's checks instead of hanging."""
    async def bench(ctx):
        cycle = 0
        for item in items:
            while rng.random() < idle:
                await ctx.tick()
                cycle += 1
            ctx.set(stream.valid, 1)
            ctx.set(stream.payload, item)
            while cycle < max_cycles:
                _, _, ready = await ctx.tick().sample(stream.ready)
                cycle += 1
                if ready:
                    accepted.append(cycle - 1)
                    break
            ctx.set(stream.valid, 0)
            if cycle >= max_cycles:
                return
    return bench


def stream_sink(stream, out: list, rng: random.Random, backpressure: float, expected: int,
                max_cycles: int = 20_000, tail: int = 20):
    """Accept beats as ``(cycle, dict)`` with random backpressure until ``expected`` came,
    then listen ``tail`` more cycles so an extra beat shows up in ``out``."""
    async def bench(ctx):
        cycle, quiet = 0, 0
        while cycle < max_cycles and quiet < tail:
            ready = len(out) >= expected or rng.random() >= backpressure
            ctx.set(stream.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(stream.valid, stream.payload)
            if ready and valid:
                out.append((cycle, {name: int(getattr(payload, name))
                                    for name, _ in payload.shape()}))
            cycle += 1
            quiet = quiet + 1 if len(out) >= expected else 0
        ctx.set(stream.ready, 0)
    return bench


def run_sim(dut, *testbenches, processes=(), vcd: str | None = None) -> None:
    """Simulate ``dut`` with a 1 GHz-equivalent sync clock and the given async testbenches."""
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    for bench in testbenches:
        sim.add_testbench(bench)
    for process in processes:
        sim.add_process(process)
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()


def scenario_test(run):
    """Decorator: the decorated ``async def test_...(...)`` (a scenario, not collectable as
    it is) becomes a plain test that calls ``run(scenario)`` — the bench set-up written once
    for every test of a file."""
    def wrap(scenario):
        def test() -> None:
            run(scenario)
        test.__name__, test.__qualname__ = scenario.__name__, scenario.__qualname__
        test.__doc__, test.__module__ = scenario.__doc__, scenario.__module__
        return test
    return wrap
