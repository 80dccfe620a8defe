"""Small helpers for amaranth.sim async testbenches (Glasgow-style stream put/get)."""

from __future__ import annotations

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
