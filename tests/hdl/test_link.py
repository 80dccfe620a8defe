# amaranth: UnusedElaboratable=no
"""hdl/link.py in amaranth.sim: two link ports (tb.link.LinkPair) closed through the seeded
wire model of model/link.py (``FaultyWire``), random messages on both classes and both
directions, consumer backpressure, and each fault type.

Expectations are independent of the DUT: the scoreboard (``DeliveryScoreboard``) holds
the messages the test sent, the wire format is parsed with the model's ``FrameParser``
and checked against ``model.link.frame_words``, and the packet counts come from
``LinkParams.segments``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from amaranth.hdl import Value
from amaranth.sim import Simulator

from hdl.link import LinkPort
from model.config import SystemConfig
from model.link import (
    STAT_NAMES,
    DeliveryScoreboard,
    FaultConfig,
    FaultyWire,
    Flit,
    FrameKind,
    FrameParser,
    LinkParams,
    TrafficClass,
    frame_words,
)
from tb.link import LinkPair

SEED = 20240701
PORTS = ("a", "b")
KEYS = [(port, tc) for port in PORTS for tc in TrafficClass]


def _stream(dut, port: str, tc: int, side: str):
    return getattr(dut, f"{port}_{TrafficClass(tc).name.lower()}_{side}")


@dataclass
class PairResult:
    board: DeliveryScoreboard
    cycles: int
    stats: dict[str, dict[str, int]]
    wires: dict[str, FaultyWire]
    frames: dict[str, list]                     # frames each port transmitted (clean copy)
    delivered_at: dict[tuple, list[int]] = field(default_factory=dict)


def run_pair(params: dict, messages: list[tuple[int, int, list[int]]],
             faults: FaultConfig | None = None, seed: int = SEED, backpressure: float = 0.0,
             ready: Callable[[str, int, int], bool] | None = None,
             max_cycles: int = 8000) -> PairResult:
    """Send ``messages`` ((source port index, tc, words)) through a LinkPair whose wires go
    through ``FaultyWire``s; stop when everything arrived (or after ``max_cycles``)."""
    dut = LinkPair(**params)
    width = dut.params.link_width
    rng = random.Random(seed)
    wires = {port: FaultyWire(width, faults, random.Random(rng.getrandbits(32)))
             for port in PORTS}
    parsers = {port: FrameParser(dut.params) for port in PORTS}
    frames: dict[str, list] = {port: [] for port in PORTS}
    board = DeliveryScoreboard()
    queues: dict[tuple, list[list[int]]] = {key: [] for key in KEYS}
    for src, tc, words in messages:
        queues[(PORTS[src], tc)].append(list(words))
        board.sent((src, tc), words)
    ins = {key: _stream(dut, *key, "in") for key in KEYS}
    outs = {key: _stream(dut, *key, "out") for key in KEYS}
    txs = [getattr(dut, f"{port}_tx") for port in PORTS]
    sampled = [*(s for tx in txs for s in (tx.valid, tx.sop, tx.flit)),
               *(ins[key].ready for key in KEYS),
               *(s for key in KEYS for s in (outs[key].valid, outs[key].payload))]
    result = PairResult(board, 0, {}, wires, frames, {key: [] for key in KEYS})

    async def bench(ctx):
        cursor = {key: (0, 0) for key in KEYS}
        partial: dict[tuple, list[int]] = {key: [] for key in KEYS}
        on_wire: dict[str, Flit | None] = {port: None for port in PORTS}
        for cycle in range(max_cycles):
            for port, other in (("a", "b"), ("b", "a")):
                flit = wires[port].step(cycle, on_wire[port])
                rx = getattr(dut, f"{other}_rx")
                ctx.set(rx.valid, flit is not None)
                if flit is not None:
                    ctx.set(rx.sop, flit.sop)
                    ctx.set(rx.flit, flit.data)
            offered = {}
            for key in KEYS:
                msg, word = cursor[key]
                offered[key] = msg < len(queues[key])
                ctx.set(ins[key].valid, offered[key])
                if offered[key]:
                    words = queues[key][msg]
                    ctx.set(ins[key].payload, {"data": words[word],
                                               "last": word == len(words) - 1})
            taking = {}
            for key in KEYS:
                taking[key] = (ready(key[0], key[1], cycle) if ready
                               else rng.random() >= backpressure)
                ctx.set(outs[key].ready, taking[key])
            _, _, *values = await ctx.tick().sample(*sampled)
            for i, port in enumerate(PORTS):
                valid, sop, data = values[3 * i:3 * i + 3]
                on_wire[port] = Flit(sop, data) if valid else None
                if valid:
                    frames[port] += parsers[port].push(on_wire[port])
            for i, key in enumerate(KEYS):
                if offered[key] and values[6 + i]:
                    msg, word = cursor[key]
                    word += 1
                    if word == len(queues[key][msg]):
                        msg, word = msg + 1, 0
                    cursor[key] = (msg, word)
            for i, key in enumerate(KEYS):
                valid, payload = values[10 + 2 * i:12 + 2 * i]
                if taking[key] and valid:
                    partial[key].append(payload.data)
                    if payload.last:
                        src = 1 - PORTS.index(key[0])
                        board.delivered((src, key[1]), partial[key])
                        result.delivered_at[(PORTS[src], key[1])].append(cycle)
                        partial[key] = []
            result.cycles = cycle + 1
            if board.outstanding() == 0 or board.errors:
                break
        await ctx.tick().repeat(8)   # let the last ACKs land before reading the counters
        for port in PORTS:
            stats = ctx.get(getattr(dut, f"{port}_stats"))
            result.stats[port] = {name: int(getattr(stats, name)) for name in STAT_NAMES}

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return result


def random_messages(rng: random.Random, count: int, max_words: int,
                    classes=(0, 1), sources=(0, 1)) -> list[tuple[int, int, list[int]]]:
    return [(rng.choice(sources), rng.choice(classes),
             [rng.getrandbits(32) for _ in range(rng.randint(1, max_words))])
            for _ in range(count)]


def assert_clean(result: PairResult) -> None:
    problems = result.board.problems()
    assert not problems, f"{len(problems)} problems, first: {problems[:3]}"
    for port in PORTS:
        assert result.stats[port]["rx_overflows"] == 0


# ---------------------------------------------------------------- parameters
@pytest.mark.parametrize("kwargs, exc, message", [
    ({"link_width": 48}, ValueError,
     "LinkPort link_width must be one of 32, 64, 128, 256 bits, not 48"),
    ({"link_width": "64"}, TypeError, "LinkPort link_width must be an integer, not '64'"),
    ({"replay_slots": 6}, ValueError,
     "LinkPort replay_slots must be a power of two in [2, 256], not 6"),
    ({"mig_share": 0}, ValueError,
     "LinkPort mig_share must be in [1, 255] (TC_MIG packets per TC_IO packet when both "
     "wait), not 0"),
    ({"max_payload_words": 0}, ValueError,
     "LinkPort max_payload_words must be in [1, 1023], not 0"),
    ({"rx_buffer_flits": 64}, ValueError,
     "LinkPort rx_buffer_flits must be a power of two in [68, 1024] (at least two maximum "
     "packets of 34 rows), not 64"),
    ({"rx_buffer_flits": 100}, ValueError,
     "LinkPort rx_buffer_flits must be a power of two in [68, 1024] (at least two maximum "
     "packets of 34 rows), not 100"),
    ({"replay_timeout": 85}, ValueError,
     "LinkPort replay_timeout must be in [86, 65535] cycles (at least two maximum frames "
     "and 16 cycles), not 85"),
    ({"replay_timeout": 2.5}, TypeError, "LinkPort replay_timeout must be an integer, not 2.5"),
])
def test_parameters_are_validated(kwargs, exc, message):
    with pytest.raises(exc) as info:
        LinkPort(**kwargs)
    assert str(info.value) == message


def test_signature_is_the_contract():
    port = LinkPort(link_width=128)
    members = {".".join(map(str, path)): (flow.flow.value.lower(), len(Value.cast(value)))
               for path, flow, value in port.signature.flatten(port)}
    assert members["tx.flit"] == ("out", 128)
    assert members["rx.flit"] == ("in", 128)
    for wire, flow in (("tx", "out"), ("rx", "in")):
        assert members[f"{wire}.valid"] == (flow, 1)
        assert members[f"{wire}.sop"] == (flow, 1)
    for name, flow in (("io_in", "in"), ("mig_in", "in"), ("io_out", "out"),
                       ("mig_out", "out")):
        assert members[f"{name}.payload"] == (flow, 33)
    assert members["stats"] == ("out", 32 * len(STAT_NAMES))   # one packed LinkStats port
    defaults = LinkPort().params
    assert (defaults.link_width, defaults.max_payload_words, defaults.slot_rows,
            defaults.rx_buffer_flits, defaults.replay_timeout) == (64, 67, 34, 128, 204)


def test_for_system_builds_the_configured_port():
    config = SystemConfig(link_width=32, link_replay_slots=2, link_max_payload_words=20)
    port = LinkPort.for_system(config)
    assert port.params == config.link
    assert len(port.tx.flit) == 32
    assert LinkPort.for_system(SystemConfig()).params == LinkPort().params


# ---------------------------------------------------------------- traffic
def test_clean_traffic_wire_format_and_counters():
    """Both directions, both classes, backpressure: everything arrives; every frame on the
    wires is the model's frame (header, payload, LCRC) with consecutive sequence numbers."""
    rng = random.Random(SEED)
    params = {}
    p = LinkParams(**params)
    messages = random_messages(rng, 16, 90)   # some longer than a packet: cut in two
    result = run_pair(params, messages, backpressure=0.3, seed=SEED)
    assert_clean(result)
    for src, port in enumerate(PORTS):
        data = [f for f in result.frames[port] if f.kind == FrameKind.DATA]
        assert all(f.ok for f in result.frames[port])
        assert [f.seq for f in data] == list(range(len(data)))
        # Packets of one class carry that class's messages in order, cut as the model cuts.
        for tc in TrafficClass:
            sent = [w for s, t, w in messages if s == src and t == tc]
            want = []
            for words in sent:
                at = 0
                for n in p.segments(len(words)):
                    want.append((tuple(words[at:at + n]), int(at + n == len(words))))
                    at += n
            assert [(f.payload, f.eom) for f in data if f.tc == tc] == want
        stats = result.stats[port]
        n_packets = sum(len(p.segments(len(w))) for s, _, w in messages if s == src)
        assert stats["tx_packets"] == n_packets
        assert result.stats[PORTS[1 - src]]["rx_packets"] == n_packets
        assert stats["tx_replays"] == stats["rx_crc_errors"] == stats["naks_sent"] == 0
        assert stats["tx_flits"] >= sum(p.frame_flits(len(f.payload)) for f in data)


def test_frames_are_bit_exact_with_the_model():
    """Every DATA frame re-encoded by model.link.frame_words gives the words on the wire."""
    rng = random.Random(SEED + 1)
    p = LinkParams()
    messages = random_messages(rng, 4, 40, sources=(0,))
    dut_frames = run_pair({}, messages).frames["a"]
    for frame in dut_frames:
        words = frame_words(frame.kind, frame.tc, frame.eom, frame.seq, frame.payload)
        assert len(words) == frame.length + 2 and frame.ok
    assert sum(f.kind == FrameKind.DATA for f in dut_frames) == sum(
        len(p.segments(len(w))) for _, _, w in messages)


FAULTS = {
    "bit_errors": (FaultConfig(ber=4e-4), "flipped_flits"),
    "bursts": (FaultConfig(burst_rate=0.02, burst_bits=12), "bursts"),
    "drops": (FaultConfig(drop_rate=0.015), "dropped"),
    "duplicates": (FaultConfig(dup_rate=0.015), "duplicated"),
    "delays": (FaultConfig(delay_rate=0.05, delay_max=6), "delays"),
    "link_down": (FaultConfig(down=((200, 150), (900, 40))), "down_lost"),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_each_fault_type_is_repaired(fault):
    """Faults on both wires (data and DLLPs): every message still arrives once, in order,
    intact; the fault really happened and (except pure delays) the link repaired it."""
    faults, counter = FAULTS[fault]
    rng = random.Random(SEED + 7)
    messages = random_messages(rng, 14, 60)
    result = run_pair({}, messages, faults, seed=SEED + sorted(FAULTS).index(fault),
                      backpressure=0.2)
    assert_clean(result)
    injected = sum(getattr(w.counts, counter) for w in result.wires.values())
    assert injected > 0, f"{fault}: no fault injected, the test proves nothing"
    repairs = sum(s["tx_replays"] for s in result.stats.values())
    if fault != "delays":
        assert repairs > 0
    else:
        assert repairs == 0


def test_narrow_link_cuts_messages_and_survives_mixed_faults():
    """32-bit flits (header, payload and LCRC one word per flit), 12-word packets (most
    messages cut), 4 replay slots and small buffers, with every fault type at once."""
    params = {"link_width": 32, "replay_slots": 4, "max_payload_words": 12,
              "rx_buffer_flits": 32, "mig_share": 2}
    faults = FaultConfig(ber=2e-4, drop_rate=0.005, dup_rate=0.005, delay_rate=0.01,
                         burst_rate=0.005)
    rng = random.Random(SEED + 3)
    result = run_pair(params, random_messages(rng, 14, 30), faults, seed=SEED + 3,
                      backpressure=0.3, max_cycles=12000)
    assert_clean(result)
    assert sum(s["tx_replays"] for s in result.stats.values()) > 0


def test_stalled_migration_consumer_does_not_block_io():
    """B never takes TC_MIG until cycle 1500: A's migration packets fill B's MIG buffer and
    A runs out of MIG credits, yet every TC_IO message still gets through, before 1500."""
    rng = random.Random(SEED + 4)
    mig = [(0, TrafficClass.MIG, [rng.getrandbits(32) for _ in range(67)]) for _ in range(8)]
    io = [(0, TrafficClass.IO, [rng.getrandbits(32) for _ in range(rng.randint(1, 4))])
          for _ in range(12)]
    messages = mig[:4] + io[:6] + mig[4:] + io[6:]
    release = 1500

    def ready(port, tc, cycle):
        return not (port == "b" and tc == TrafficClass.MIG and cycle < release)

    result = run_pair({}, messages, ready=ready)
    assert_clean(result)
    io_done = result.delivered_at[("a", TrafficClass.IO)]
    assert len(io_done) == len(io) and max(io_done) < release
    assert min(result.delivered_at[("a", TrafficClass.MIG)]) >= release
    assert result.stats["b"]["rx_overflows"] == 0


def test_migration_share_bounds_consecutive_migration_packets():
    """Both classes always waiting: at most ``mig_share`` TC_MIG packets in a row between
    TC_IO packets, and TC_IO never gets two in a row while TC_MIG waits."""
    share = 2
    rng = random.Random(SEED + 5)
    mig = [(0, TrafficClass.MIG, [rng.getrandbits(32) for _ in range(20)]) for _ in range(9)]
    io = [(0, TrafficClass.IO, [rng.getrandbits(32) for _ in range(20)]) for _ in range(4)]
    result = run_pair({"mig_share": share}, mig + io)
    assert_clean(result)
    classes = [f.tc for f in result.frames["a"] if f.kind == FrameKind.DATA]
    # While both have messages left (first 12 packets: 4 IO interleaved with 8 MIG).
    both = classes[:len(io) * (share + 1)]
    runs, count = [], 0
    for tc in both:
        if tc == TrafficClass.MIG:
            count += 1
        else:
            runs.append(count)
            count = 0
    assert both.count(TrafficClass.IO) == len(io)
    assert max(runs + [count]) <= share
    assert all(a != b or a == TrafficClass.MIG for a, b in zip(both, both[1:], strict=False))


@pytest.mark.parametrize("params, length", [({}, 3), ({}, 67), ({"link_width": 32}, 3),
                                            ({"link_width": 128}, 10)])
def test_latency_is_as_documented(params, length):
    """First beat in at port a to first beat out at port b, wires joined without delay:
    L + frame flits + 6 cycles (+1 at 32 bits), as hdl/link.py's docstring says."""
    p = LinkParams(**params)
    dut = LinkPair(**params)
    seen = {}

    async def bench(ctx):
        words = list(range(length))
        sent = 0
        ctx.set(dut.b_mig_out.ready, 1)
        for cycle in range(400):
            for src, dst in ((dut.a_tx, dut.b_rx), (dut.b_tx, dut.a_rx)):
                for name in ("valid", "sop", "flit"):
                    ctx.set(getattr(dst, name), ctx.get(getattr(src, name)))
            offer = cycle >= 40 and sent < length    # after the first FC DLLPs landed
            ctx.set(dut.a_mig_in.valid, offer)
            if offer:
                ctx.set(dut.a_mig_in.payload, {"data": words[sent],
                                               "last": sent == length - 1})
            if offer and ctx.get(dut.a_mig_in.ready):
                seen.setdefault("in", cycle)
                sent += 1
            if ctx.get(dut.b_mig_out.valid):
                seen.setdefault("out", cycle)
                break
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    expected = length + p.frame_flits(length) + 6 + (p.link_width == 32)
    assert seen["out"] - seen["in"] == expected
