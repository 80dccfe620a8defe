"""tb/common/link_fault.py: the pure-Python channel (seeded fault decisions, latency,
counters, link-down windows) and, on a simulator, the agent closing a real link.

The last part is both the pytest entry and the cocotb module: ``test_agent_closes_a_link``
runs this file's ``@cocotb.test`` (``agent_closes_a_link``) on the generated Verilog of
``tb.link.LinkPair`` (the link bench's DUT, built once and shared with it), with one
``LinkFaultAgent`` per direction, and checks that every message crosses once, in order,
intact (``model.link.DeliveryScoreboard``) while the agents report the faults they made.
"""

from __future__ import annotations

import random

import pytest

from model.link import FaultConfig, Flit
from tb.common.link_fault import FaultyChannel
from tb.common.runner import bench_matrix, run_tests
from tb.common.seeds import bench_seed, derive_seeds, generator_seeds

SEED = bench_seed(20240802)   # VFMIG_SEED overrides it
WIDTH = 64


def traffic(rng: random.Random, cycles: int, busy: float = 0.7) -> list[Flit | None]:
    return [Flit(int(rng.random() < 0.2), rng.getrandbits(WIDTH)) if rng.random() < busy
            else None for _ in range(cycles)]


def run(channel: FaultyChannel, flits: list[Flit | None], tail: int = 64) -> list[Flit | None]:
    return [channel.step(f) for f in flits] + [channel.step(None) for _ in range(tail)]


def valid(flits) -> list[Flit]:
    return [f for f in flits if f is not None]


# ================================================================ pure Python
def test_no_faults_is_a_wire_with_latency():
    flits = traffic(random.Random(1), 500)
    for latency in (0, 1, 5):
        out = run(FaultyChannel(WIDTH, latency=latency), flits, tail=latency)
        assert out == [None] * latency + flits, latency
    counts = FaultyChannel(WIDTH).counts()
    assert counts["cycles"] == 0 and counts["forwarded"] == 0


def test_same_seed_same_faults_other_seed_other_faults():
    faults = FaultConfig(ber=1e-3, burst_rate=0.01, drop_rate=0.01, dup_rate=0.01,
                         delay_rate=0.02)
    flits = traffic(random.Random(2), 3000)
    a = run(FaultyChannel(WIDTH, faults, seed=SEED), flits)
    b = run(FaultyChannel(WIDTH, faults, seed=SEED), flits)
    c = run(FaultyChannel(WIDTH, faults, seed=SEED + 1), flits)
    assert a == b
    assert a != c
    assert derive_seeds(SEED, 2) == derive_seeds(SEED, 2)
    assert len(set(derive_seeds(SEED, 2))) == 2


def test_drop_all_and_duplicate_all():
    flits = traffic(random.Random(3), 400)
    sent = valid(flits)
    ch = FaultyChannel(WIDTH, FaultConfig(drop_rate=1.0))
    assert valid(run(ch, flits)) == []
    assert ch.counts()["dropped"] == len(sent) == ch.counts()["flits"]
    ch = FaultyChannel(WIDTH, FaultConfig(dup_rate=1.0))
    out = valid(run(ch, flits, tail=len(sent) + 8))
    assert out == [f for f in sent for _ in range(2)], "each flit twice, order kept"
    assert ch.counts()["duplicated"] == len(sent)
    assert ch.counts()["forwarded"] == 2 * len(sent)


def test_bit_errors_match_their_count_and_rate():
    ber = 2e-3
    flits = traffic(random.Random(4), 6000, busy=1.0)
    ch = FaultyChannel(WIDTH, FaultConfig(ber=ber), seed=SEED)
    out = run(ch, flits, tail=0)
    flips = sum(bin((a.data ^ b.data) | (a.sop ^ b.sop) << WIDTH).count("1")
                for a, b in zip(flits, out, strict=True))
    counts = ch.counts()
    assert flips == counts["bit_flips"] > 0
    expected = ber * (WIDTH + 1) * len(flits)
    assert 0.8 * expected < flips < 1.2 * expected, (flips, expected)
    assert counts["flipped_flits"] == sum(a != b for a, b in zip(flits, out, strict=True))


def test_bursts_flip_adjacent_bits():
    flits = [Flit(0, 0)] * 2000
    ch = FaultyChannel(WIDTH, FaultConfig(burst_rate=0.05, burst_bits=6), seed=SEED)
    out = run(ch, flits, tail=0)
    bursts = [f for f in out if f != Flit(0, 0)]
    assert len(bursts) == ch.counts()["bursts"] > 50
    for f in bursts:
        mask = f.data | f.sop << WIDTH
        low = mask & -mask
        run_bits = mask // low
        assert run_bits & (run_bits + 1) == 0 and bin(mask).count("1") <= 6, hex(mask)


def test_link_down_windows_from_config_and_at_runtime():
    flits = [Flit(1, i) for i in range(100)]
    ch = FaultyChannel(WIDTH, FaultConfig(down=((10, 5),)))
    out = []
    for i, f in enumerate(flits):
        if i == 50:
            assert ch.link_down(7) == (50, 7)
        out.append(ch.step(f))
    lost = [i for i, f in enumerate(out) if f is None]
    assert lost == [*range(10, 15), *range(50, 57)]
    assert ch.counts()["down_lost"] == 12
    with pytest.raises(ValueError):
        ch.link_down(0)


def test_delays_hold_the_wire_and_lose_nothing():
    flits = traffic(random.Random(5), 1000)
    ch = FaultyChannel(WIDTH, FaultConfig(delay_rate=0.05, delay_max=4), seed=SEED)
    out = run(ch, flits, tail=2000)
    assert valid(out) == valid(flits)
    assert ch.counts()["delays"] > 10


def test_configure_switches_faults_and_keeps_counters():
    flits = traffic(random.Random(6), 200, busy=1.0)
    ch = FaultyChannel(WIDTH, FaultConfig(drop_rate=1.0))
    run(ch, flits, tail=0)
    ch.configure(FaultConfig(), seed=7)
    out = run(ch, flits, tail=0)
    assert out == flits
    assert ch.counts()["dropped"] == 200 and ch.counts()["flits"] == 400
    with pytest.raises(TypeError):
        ch.configure({"ber": 1e-3})


def test_parameter_checks():
    with pytest.raises(ValueError) as exc:
        FaultyChannel(0)
    assert str(exc.value) == "FaultyChannel link_width must be at least 1, not 0"
    with pytest.raises(ValueError) as exc:
        FaultyChannel(64, latency=-1)
    assert str(exc.value) == "FaultyChannel latency must be at least 0, not -1"


# ================================================================ on a simulator
@bench_matrix()
def test_agent_closes_a_link(sim: str) -> None:
    from tb.link import CONFIGS, config_env, link_pair

    run_tests(sim, "link_default", lambda: link_pair("default"), __name__,
              parameters=CONFIGS["default"], extra_env=config_env("default"), seed=SEED,
              results_name="link_fault_results.xml")


try:
    import cocotb
except ImportError:  # pragma: no cover - cocotb is a pinned dependency
    cocotb = None

if cocotb is not None:
    @cocotb.test()
    async def agent_closes_a_link(dut):
        """Both directions of a LinkPair through a LinkFaultAgent with every fault type and
        a link-down window added at runtime; every message still arrives once, in order."""
        from cocotb.clock import Clock
        from cocotb.triggers import RisingEdge

        from hdl.formats import ChunkBeat
        from model.link import DeliveryScoreboard
        from tb.common.link_fault import LinkFaultAgent
        from tb.common.streams import StreamDriver, StreamMonitor

        rng_seed, fault_seed = generator_seeds(dut._log, 2, "agent_closes_a_link")
        rng = random.Random(rng_seed)
        faults = FaultConfig(ber=2e-5, burst_rate=0.002, drop_rate=0.003, dup_rate=0.003,
                             delay_rate=0.01, down=((300, 60),))
        agents = LinkFaultAgent.both_directions(dut, ("a_tx", "b_rx"), ("b_tx", "a_rx"),
                                                faults, seed=fault_seed)
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
        for port in ("a", "b"):
            getattr(dut, f"{port}_mig_in__valid").value = 0
            getattr(dut, f"{port}_mig_out__ready").value = 1
        dut.rst.value = 1
        for _ in range(4):
            await RisingEdge(dut.clk)
        dut.rst.value = 0
        for agent in agents:
            agent.start()

        board = DeliveryScoreboard()
        partial = {"a": [], "b": []}

        def delivered(port):
            def take(beat):
                partial[port].append(beat["data"])
                if beat["last"]:
                    # A message port b delivers was sent by port a.
                    board.delivered(("b" if port == "a" else "a",), partial[port])
                    partial[port] = []
            return take

        beat = ChunkBeat.as_shape()
        monitors = [StreamMonitor(dut, f"{p}_io_out", dut.clk, beat, backpressure_prob=0.2,
                                  rng=random.Random(rng.getrandbits(32)), callback=delivered(p))
                    for p in ("a", "b")]

        async def send(port, count):
            driver = StreamDriver(dut, f"{port}_io_in", dut.clk, beat, idle_prob=0.2,
                                  rng=random.Random(rng.getrandbits(32)))
            for _ in range(count):
                words = [rng.getrandbits(32) for _ in range(rng.randint(1, 12))]
                board.sent((port,), words)
                for i, word in enumerate(words):
                    await driver.send({"data": word, "last": int(i == len(words) - 1)})

        tasks = [cocotb.start_soon(send(p, 60)) for p in ("a", "b")]
        await RisingEdge(dut.clk)
        agents[1].link_down(40, start=agents[1].cycle + 100)
        for task in tasks:
            await task
        for _ in range(20_000):
            if not board.outstanding() or board.errors:
                break
            await RisingEdge(dut.clk)
        for monitor in monitors:
            monitor.stop()
        counts = [agent.counts() for agent in agents]
        for agent, c in zip(agents, counts, strict=True):
            dut._log.info("%s injected %s", agent.name, c)
        assert not board.problems(), board.problems()[:5]
        total = {k: counts[0][k] + counts[1][k] for k in counts[0]}
        assert total["down_lost"] > 0 and total["dropped"] + total["bit_flips"] > 0, total
        assert all(c["flits"] > 0 and c["forwarded"] > 0 for c in counts)
