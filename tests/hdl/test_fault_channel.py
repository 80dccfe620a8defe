"""tests for hdl/fault_channel.py: the HDL fault channel against the Python fault model.

amaranth.sim runs the channel with random traffic; the same traffic goes through
``tb.common.link_fault.FaultyChannel`` (``model.link.FaultyWire``) at the same rates. The
fault positions differ (xorshift32 vs. ``random.Random``) so the counters are compared as
rates, within a statistical bound; the flits themselves are checked exactly where the
outcome does not depend on the random draws (no faults, link-down windows, ``arm``).
"""

from __future__ import annotations

import math
import random

import pytest

from hdl.fault_channel import FaultChannel, channel_settings
from model.link import FaultConfig, Flit
from tb.common.link_fault import FaultyChannel
from tests.hdl.simutil import run_sim

WIDTH = 32
BITS = WIDTH + 1


def traffic(rng: random.Random, cycles: int, busy: float = 0.7) -> list[Flit | None]:
    return [Flit(int(rng.random() < 0.2), rng.getrandbits(WIDTH)) if rng.random() < busy
            else None for _ in range(cycles)]


def run_hdl(faults: FaultConfig, flits: list[Flit | None], seed: int = 1, tail: int = 64,
            arm_at: int = 0) -> tuple[list[Flit | None], dict[str, int]]:
    """Drive ``flits`` (one per cycle) into the channel; returns what the receiver saw in
    each cycle from cycle 1 on, and the counters."""
    dut = FaultChannel(WIDTH, seed=seed)
    seen: list[Flit | None] = []
    counts: dict[str, int] = {}

    async def bench(ctx):
        for port, value in channel_settings(faults, BITS).items():
            ctx.set(getattr(dut, port), value)
        for t, flit in enumerate(flits + [None] * tail):
            ctx.set(dut.arm, int(t >= arm_at))
            ctx.set(dut.tx_valid, flit is not None)
            if flit is not None:
                ctx.set(dut.tx_sop, flit.sop)
                ctx.set(dut.tx_flit, flit.data)
            await ctx.tick()
            seen.append(Flit(ctx.get(dut.rx_sop), ctx.get(dut.rx_flit))
                        if ctx.get(dut.rx_valid) else None)
        for name in ("flits", "bit_flips", "flipped_flits", "bursts", "dropped", "duplicated",
                     "delays", "down_lost", "overflowed", "forwarded"):
            counts[name] = ctx.get(getattr(dut, f"count_{name}"))

    run_sim(dut, bench)
    return seen, counts


def run_python(faults: FaultConfig, flits: list[Flit | None], seed: int = 1,
               tail: int = 64) -> tuple[list[Flit | None], dict[str, int]]:
    channel = FaultyChannel(WIDTH, faults, seed)
    seen = [channel.step(f) for f in flits + [None] * tail]
    return seen, channel.counts()


def test_no_faults_is_the_python_wire():
    flits = traffic(random.Random(1), 400)
    hdl, counts = run_hdl(FaultConfig(), flits)
    python, _ = run_python(FaultConfig(), flits)
    assert hdl == python
    assert counts["flits"] == counts["forwarded"] == sum(f is not None for f in flits)


def test_rates_match_the_python_model():
    faults = FaultConfig(ber=4e-3, burst_rate=0.04, drop_rate=0.05, dup_rate=0.05,
                         delay_rate=0.02, delay_max=4)
    flits = traffic(random.Random(7), 5_000, busy=0.6)
    hdl_seen, hdl = run_hdl(faults, flits, seed=11)
    _, python = run_python(faults, flits, seed=11)
    assert hdl["flits"] == python["flits"]
    n = hdl["flits"]
    for name in ("flipped_flits", "bursts", "dropped", "duplicated", "delays"):
        p = python[name] / n
        bound = 5 * math.sqrt(max(p, 1 / n) * n) + 2
        assert abs(hdl[name] - python[name]) <= bound, (name, hdl[name], python[name])
    assert abs(hdl["bit_flips"] - python["bit_flips"]) <= 0.25 * python["bit_flips"] + 10
    # Nothing else is lost: what went in, minus drops, plus duplicates, came out in order.
    assert hdl["overflowed"] == 0
    assert hdl["forwarded"] == n - hdl["dropped"] + hdl["duplicated"]
    assert sum(f is not None for f in hdl_seen) == hdl["forwarded"]


def test_down_window_counts_from_arm():
    # Drops at rate 1 before arm would lose every flit: none is lost until arm is high.
    flits = [Flit(0, i) for i in range(120)]
    faults = FaultConfig(down=((10, 20),))
    seen, counts = run_hdl(faults, flits, arm_at=50)
    assert counts["down_lost"] == 20
    lost = set(range(60, 80))
    assert [f.data for f in seen if f is not None] == [i for i in range(120) if i not in lost]
    _, dropped = run_hdl(FaultConfig(drop_rate=1.0), flits, arm_at=50)
    assert dropped["dropped"] == 70 and dropped["forwarded"] == 50


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
@pytest.mark.parametrize(("make", "message"), [
    (lambda: FaultChannel(WIDTH, kinds=("ber", "jitter")),
     "FaultChannel: unknown fault kind 'jitter': choose from ber, burst, drop, dup, delay, "
     "down"),
    (lambda: FaultChannel(0), "FaultChannel width must be at least 1, not 0"),
    (lambda: FaultChannel(WIDTH, depth=1), "FaultChannel depth must be at least 2, not 1"),
    (lambda: channel_settings(FaultConfig(down=((5, -3),)), BITS),
     "fault channel down window 0 (5, -3): start must be >= 0 and cycles >= 1"),
    (lambda: channel_settings(FaultConfig(down=((-1, 3),)), BITS),
     "fault channel down window 0 (-1, 3): start must be >= 0 and cycles >= 1"),
    (lambda: channel_settings(FaultConfig(delay_max=16), BITS),
     "fault channel delay_max must be in [1, 15], not 16"),
    (lambda: FaultConfig(drop_rate=1.5),
     "FaultConfig.drop_rate must be a probability in [0, 1], not 1.5"),
])
def test_out_of_range_parameters_are_refused(make, message):
    with pytest.raises(ValueError) as info:
        make()
    assert str(info.value) == message
