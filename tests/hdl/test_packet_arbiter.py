# amaranth: UnusedElaboratable=no
"""hdl/packet_arbiter.py in amaranth.sim: whole packets, round robin, backpressure.

Every beat carries (input, packet number, beat number) in its data, so the checks below
read the arbiter's behaviour off its output alone: the expectations come from the packet
lists the sources were given, never from the arbiter.
"""

from __future__ import annotations

import random

import pytest

from hdl.packet_arbiter import PacketArbiter
from tests.hdl.simutil import run_sim


def beat_word(source: int, packet: int, beat: int) -> int:
    return source << 24 | packet << 12 | beat


def split_word(word: int) -> tuple[int, int, int]:
    return word >> 24, (word >> 12) & 0xFFF, word & 0xFFF


class Bench:
    """Sources driving ``inputs[i]`` with packet lists, a sink with random ``ready``."""

    def __init__(self, n_inputs: int, packets: list[list[int]], rng: random.Random,
                 idle_prob: float = 0.0, backpressure: float = 0.0):
        self.dut = PacketArbiter(n_inputs)
        self.packets = packets            # packets[i] = lengths of input i's packets
        self.rng, self.idle_prob, self.backpressure = rng, idle_prob, backpressure
        self.cycle = 0
        self.offered: dict[tuple[int, int], int] = {}   # (input, packet) -> first offer cycle
        self.out: list[tuple[int, int, int]] = []  # (cycle, word, last) per accepted beat
        self.stall_violations: list[str] = []
        self.total = sum(map(sum, packets))

    def source(self, index: int):
        async def bench(ctx):
            port = self.dut.inputs[index]
            rng = random.Random(self.rng.getrandbits(32))
            for number, length in enumerate(self.packets[index]):
                for beat in range(length):
                    while self.idle_prob and rng.random() < self.idle_prob:
                        await ctx.tick()
                    ctx.set(port.payload, {"data": beat_word(index, number, beat),
                                           "last": beat == length - 1})
                    ctx.set(port.valid, 1)
                    if beat == 0:
                        self.offered[(index, number)] = self.cycle
                    await ctx.tick().until(port.ready)
                    ctx.set(port.valid, 0)
        return bench

    async def sink(self, ctx):
        out = self.dut.output
        rng = random.Random(self.rng.getrandbits(32))
        stalled = None  # payload offered and not taken in the previous cycle
        while len(self.out) < self.total:
            ctx.set(out.ready, rng.random() >= self.backpressure)
            _, _, valid, ready, payload = await ctx.tick().sample(out.valid, out.ready,
                                                                   out.payload)
            word, last = int(payload.data), int(payload.last)
            if stalled is not None and (not valid or (word, last) != stalled):
                self.stall_violations.append(
                    f"cycle {self.cycle}: beat {stalled} offered under backpressure was "
                    f"withdrawn or changed (valid={valid}, now {(word, last)})")
            stalled = (word, last) if valid and not ready else None
            if valid and ready:
                self.out.append((self.cycle, word, last))
            self.cycle += 1
            assert self.cycle < 20_000, "arbiter stopped moving beats"

    def run(self):
        run_sim(self.dut, self.sink, *(self.source(i) for i in range(self.dut.n_inputs)))
        return self

    # -- derived views of the output
    def output_packets(self) -> list[tuple[int, int, int, int]]:
        """(input, packet, first cycle, beats) per output packet; fails on interleaving."""
        packets, current = [], None
        for cycle, word, last in self.out:
            source, number, beat = split_word(word)
            if current is None:
                assert beat == 0, f"packet {source}.{number} starts at beat {beat}"
                current = [source, number, cycle, 0]
            assert (source, number) == tuple(current[:2]), (
                f"cycle {cycle}: beat of packet {source}.{number} inside packet "
                f"{current[0]}.{current[1]} (interleaved)")
            assert beat == current[3], f"packet {source}.{number}: beat {beat} out of order"
            current[3] += 1
            if last:
                packets.append(tuple(current))
                current = None
        assert current is None, "output ends inside a packet"
        return packets


def check_complete(bench: Bench) -> list[tuple[int, int, int, int]]:
    packets = bench.output_packets()
    for index, lengths in enumerate(bench.packets):
        mine = [(number, beats) for source, number, _, beats in packets if source == index]
        assert mine == list(enumerate(lengths)), f"input {index}: packets out of order or cut"
    assert not bench.stall_violations, bench.stall_violations[:3]
    return packets


def test_constructor_rejects_bad_input_counts():
    for bad in (0, -1):
        with pytest.raises(ValueError) as exc:
            PacketArbiter(bad)
        assert str(exc.value) == f"PacketArbiter n_inputs must be at least 1, not {bad}"
    for bad in (1.5, "2"):
        with pytest.raises(TypeError) as exc:
            PacketArbiter(bad)
        assert str(exc.value) == f"PacketArbiter n_inputs must be an integer, not {bad!r}"


@pytest.mark.parametrize("seed", [1, 2])
def test_no_interleaving_with_idle_sources_and_backpressure(seed):
    rng = random.Random(seed)
    print(f"seed {seed}")
    packets = [[rng.randint(1, 6) for _ in range(12)] for _ in range(3)]
    bench = Bench(3, packets, rng, idle_prob=0.3, backpressure=0.3).run()
    check_complete(bench)


def test_round_robin_under_full_load():
    """Every input always has a packet waiting: grants rotate 0, 1, 2, 0, ... exactly."""
    rng = random.Random(7)
    packets = [[rng.randint(1, 5) for _ in range(8)] for _ in range(3)]
    bench = Bench(3, packets, rng).run()
    order = [source for source, _, _, _ in check_complete(bench)]
    assert all(b == (a + 1) % 3 for a, b in zip(order, order[1:], strict=False)), order


def test_no_input_waits_more_than_one_packet_per_other_input():
    """Fairness with bursty sources: between offering a packet and sending it, an input
    sees at most one packet of each other input go out."""
    rng = random.Random(11)
    packets = [[rng.randint(1, 4) for _ in range(15)] for _ in range(4)]
    bench = Bench(4, packets, rng, idle_prob=0.5, backpressure=0.2).run()
    out = check_complete(bench)
    for index, (source, number, _, _) in enumerate(out):
        offered = bench.offered[(source, number)]
        overtaken = [s for s, _, c, _ in out[:index] if c >= offered]
        assert len(overtaken) <= 3 and len(set(overtaken)) == len(overtaken), (
            f"packet {source}.{number} offered at cycle {offered} waited for {overtaken}")


def test_backpressure_stalls_only_the_granted_input():
    """With the output stalled, only the input holding the grant sees ready; nothing moves."""
    dut = PacketArbiter(2)

    async def bench(ctx):
        for port in dut.inputs:
            ctx.set(port.valid, 1)
            ctx.set(port.payload, {"data": 0, "last": 0})
        ctx.set(dut.output.ready, 0)
        for _ in range(5):
            await ctx.tick()
            readies = [ctx.get(port.ready) for port in dut.inputs]
            assert readies == [0, 0], readies
            assert ctx.get(dut.output.valid) == 1
        ctx.set(dut.output.ready, 1)
        readies = [ctx.get(port.ready) for port in dut.inputs]
        assert sorted(readies) == [0, 1], f"exactly one input is granted: {readies}"

    run_sim(dut, bench)


def test_single_input_passes_combinationally():
    dut = PacketArbiter(1)

    async def bench(ctx):
        port = dut.inputs[0]
        ctx.set(dut.output.ready, 1)
        for word in (0x1234, 0xBEEF):
            ctx.set(port.valid, 1)
            ctx.set(port.payload, {"data": word, "last": 1})
            # 0 cycles: the beat is on the output in the cycle it is offered
            assert ctx.get(dut.output.valid) == 1 and ctx.get(port.ready) == 1
            assert ctx.get(dut.output.payload.data) == word
            await ctx.tick()
        ctx.set(port.valid, 0)
        assert ctx.get(dut.output.valid) == 0

    run_sim(dut, bench)
