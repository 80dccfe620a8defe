# amaranth: UnusedElaboratable=no
"""hdl/io_tunnel.py (and its reference, model/io_message.py) in amaranth.sim.

The expectations come from the records the test generated and from the Python reference
``model.io_message.encode/decode``, never from the DUT: records must come out of the other
half intact, in order, once; every message on the "link" must be the reference encoding
of the next record of its kind; malformed messages (classified by the reference decoder)
are dropped and counted, and never stall the tunnel.
"""

from __future__ import annotations

import random

import pytest
from amaranth.lib import data
from amaranth.sim import Simulator

from hdl.formats import ChunkBeat
from hdl.io_tunnel import IoDecoder, IoEncoder, IoTunnelDevice, IoTunnelHost, offload_layouts
from model.config import SystemConfig
from model.io_message import (
    IO_FIELDS,
    MAX_MESSAGE_WORDS,
    MESSAGE_WORDS,
    IoKind,
    MalformedIoMessage,
    check_widths,
    decode,
    doc_table,
    encode,
)
from model.link import FaultConfig, Flit
from tb.common.link_fault import FaultyChannel
from tb.common.seeds import derive_seeds
from tb.io_tunnel import CONFIGS, WIRES, TunnelPair, record_layouts
from tests.hdl.simutil import run_sim

# Wire faults of the link configuration when the profile also stalls the link.
LINK_FAULTS = FaultConfig(ber=1e-5, burst_rate=2e-3, drop_rate=3e-3, dup_rate=3e-3,
                          delay_rate=5e-3)

SEED = 20240801
MAX_CYCLES = 50_000


def random_record(layout: data.Layout, rng: random.Random) -> dict[str, int]:
    return {name: rng.getrandbits(f.width) for name, f in layout}


def as_dict(value) -> dict[str, int]:
    """A struct value read with ctx.get, as plain ints."""
    return {name: int(getattr(value, name)) for name, _ in value.shape()}


# ================================================================ the Python reference
def test_message_lengths_and_encoding_positions():
    assert MESSAGE_WORDS == {IoKind.REQ: 4, IoKind.RESP: 3, IoKind.IRQ: 3}
    assert MAX_MESSAGE_WORDS == 4
    words = encode(IoKind.REQ, {"slot": 0xA5, "op": 3, "tag": 0xDEADBEEF, "addr": 0x123,
                                "data": 0xCAFEF00D})
    assert words == [1 | 0xA5 << 4 | 3 << 12, 0xDEADBEEF, 0x123, 0xCAFEF00D]
    words = encode(IoKind.RESP, {"slot": 7, "error": 1, "tag": 9, "data": 0xFFFF_FFFF})
    assert words == [2 | 7 << 4 | 1 << 12, 9, 0xFFFF_FFFF]
    words = encode(IoKind.IRQ, {"slot": 255, "vector": 0xFFF, "addr": 0xFEE0_0000, "data": 42})
    assert words == [3 | 255 << 4 | 0xFFF << 12, 0xFEE0_0000, 42]
    assert "| REQ = 1 | 4 | kind | 0 | [3:0] |" in doc_table()


@pytest.mark.parametrize("kind", list(IoKind))
def test_encode_decode_round_trip(kind):
    rng = random.Random(SEED + kind)
    for _ in range(200):
        values = {name: rng.getrandbits(width) for name, (_, _, width) in IO_FIELDS[kind].items()}
        msg = decode(encode(kind, values))
        assert msg.kind == kind and msg.fields == values


def test_decode_ignores_reserved_bits():
    words = encode(IoKind.RESP, {"slot": 1, "error": 0, "tag": 2, "data": 3})
    words[0] |= 0xFFFF_E000      # reserved bits of a RESP header
    assert decode(words).fields == {"slot": 1, "error": 0, "tag": 2, "data": 3}


def test_decode_rejects_malformed():
    good = encode(IoKind.IRQ, {"slot": 1, "vector": 2, "addr": 3, "data": 4})
    cases = {
        "empty": [],
        "kind 0": [good[0] & ~0xF, *good[1:]],
        "kind 9": [(good[0] & ~0xF) | 9, *good[1:]],
        "short": good[:2],
        "long": [*good, 0],
    }
    for name, words in cases.items():
        with pytest.raises(MalformedIoMessage):
            decode(words)
        assert name
    with pytest.raises(MalformedIoMessage) as exc:
        decode(good, accept=(IoKind.REQ,))
    assert str(exc.value) == "kind 3 is not one of REQ"
    with pytest.raises(MalformedIoMessage) as exc:
        decode(good[:2])
    assert str(exc.value) == "IRQ message of 2 words, expected 3"


def test_encode_rejects_bad_values():
    with pytest.raises(ValueError) as exc:
        encode(IoKind.RESP, {"slot": 256, "error": 0, "tag": 0, "data": 0})
    assert str(exc.value) == "RESP field 'slot' = 256 does not fit 8 bits"
    with pytest.raises(KeyError):
        encode(IoKind.RESP, {"slot": 0, "error": 0, "tag": 0, "data": 0, "op": 1})


def test_check_widths_messages():
    with pytest.raises(ValueError) as exc:
        check_widths(IoKind.RESP, {"slot": 2, "tag": 8, "data": 32}, "X")
    assert str(exc.value) == ("X must have the fields ['data', 'error', 'slot', 'tag']; "
                              "missing ['error'], unexpected []")
    with pytest.raises(ValueError) as exc:
        check_widths(IoKind.IRQ, {"slot": 2, "vector": 13, "addr": 32, "data": 32}, "Y")
    assert str(exc.value) == "Y field 'vector' is 13 bits; a IRQ message carries 1..12"


# ================================================================ parameter validation
def test_constructors_validate_layouts():
    lay = record_layouts(slot=2, tag=8, addr=9, vector=2)
    req, resp, irq = lay[IoKind.REQ], lay[IoKind.RESP], lay[IoKind.IRQ]
    with pytest.raises(TypeError) as exc:
        IoTunnelHost("req", resp, irq)
    assert str(exc.value) == ("IoTunnelHost request_layout must be an amaranth data.Layout, "
                              "not 'req'")
    with pytest.raises(ValueError) as exc:
        IoTunnelDevice(req, req, irq)
    assert str(exc.value).startswith("IoTunnelDevice response_layout must have the fields "
                                     "['data', 'error', 'slot', 'tag']; missing ['error'], "
                                     "unexpected ['addr', 'op']")
    wide = record_layouts(slot=9, tag=8, addr=9, vector=2)
    with pytest.raises(ValueError) as exc:
        IoTunnelHost(wide[IoKind.REQ], resp, irq)
    assert str(exc.value) == ("IoTunnelHost request_layout field 'slot' is 9 bits; a REQ "
                              "message carries 1..8")
    with pytest.raises(TypeError) as exc:
        IoEncoder(1, req)
    assert str(exc.value) == "IoEncoder kind must be an IoKind, not 1"
    with pytest.raises(TypeError) as exc:
        IoDecoder({})
    assert str(exc.value) == ("IoDecoder layouts must be a non-empty mapping of IoKind to "
                              "data.Layout, not {}")
    with pytest.raises(TypeError) as exc:
        IoDecoder({1: req})
    assert str(exc.value) == "IoDecoder layouts keys must be IoKind, not 1"


def test_for_system_matches_the_system_layouts():
    cfg = SystemConfig(n_vfs=5, host_slots=6, offload_slots=3, tag_bits=5)
    host = IoTunnelHost.for_system(cfg)
    lay = offload_layouts(cfg)
    assert host.req.signature.members["payload"].shape == lay[IoKind.REQ]
    assert lay[IoKind.REQ]["tag"].width == 5 + 3 and lay[IoKind.REQ]["slot"].width == 2
    IoTunnelDevice.for_system(cfg)


# ================================================================ the round trip
class RoundTrip:
    """Random records into both halves of a TunnelPair; stalls on both link directions,
    idle sources and backpressured sinks. Records every crossing beat."""

    def __init__(self, widths: dict[str, int], counts: dict[IoKind, int], rng: random.Random,
                 idle: float = 0.3, backpressure: float = 0.3, stall: float = 0.2,
                 fifo_depth: int = 4, link: dict | None = None,
                 faults: FaultConfig | None = None):
        self.dut = dut = TunnelPair(widths, fifo_depth, link)
        self.rng, self.idle, self.backpressure, self.stall = rng, idle, backpressure, stall
        self.faults = faults or FaultConfig()
        self.sent = {kind: [random_record(dut.layouts[kind], rng) for _ in range(n)]
                     for kind, n in counts.items()}
        self.got: dict[IoKind, list[dict]] = {kind: [] for kind in IoKind}
        self.beats = {"down": [], "up": []}    # (cycle, data, last)
        self.violations: list[str] = []
        self.done = False
        self.inputs = {IoKind.REQ: dut.req, IoKind.RESP: dut.dev_resp, IoKind.IRQ: dut.dev_irq}
        self.outputs = {IoKind.REQ: dut.dev_req, IoKind.RESP: dut.resp, IoKind.IRQ: dut.irq}

    def source(self, kind: IoKind):
        async def bench(ctx):
            port, rng = self.inputs[kind], random.Random(self.rng.getrandbits(32))
            for record in self.sent[kind]:
                while self.idle and rng.random() < self.idle:
                    await ctx.tick()
                ctx.set(port.payload, record)
                ctx.set(port.valid, 1)
                await ctx.tick().until(port.ready)
                ctx.set(port.valid, 0)
        return bench

    def sink(self, kind: IoKind):
        async def bench(ctx):
            port, rng = self.outputs[kind], random.Random(self.rng.getrandbits(32))
            stalled, cycle = None, 0
            while len(self.got[kind]) < len(self.sent[kind]):
                ctx.set(port.ready, rng.random() >= self.backpressure)
                _, _, valid, ready, payload = await ctx.tick().sample(port.valid, port.ready,
                                                                       port.payload)
                record = as_dict(payload) if valid else None
                if stalled is not None and record != stalled:
                    self.violations.append(f"{kind.name}: record withdrawn or changed under "
                                           f"backpressure at cycle {cycle}")
                stalled = record if valid and not ready else None
                if valid and ready:
                    self.got[kind].append(record)
                cycle += 1
                assert cycle < MAX_CYCLES, f"{kind.name}: stopped after {self.got[kind]!r:.80}"
        return bench

    async def link(self, ctx):
        """Stalls both link directions at random and records every beat that crosses."""
        dut, rng = self.dut, random.Random(self.rng.getrandbits(32))
        want = {"down": 4 * len(self.sent[IoKind.REQ]),
                "up": 3 * (len(self.sent[IoKind.RESP]) + len(self.sent[IoKind.IRQ]))}
        cycle = 0
        while any(len(self.beats[d]) < want[d] for d in want):
            for d in want:
                ctx.set(getattr(dut, f"{d}_stall"), rng.random() < self.stall)
            _, _, *seen = await ctx.tick().sample(dut.down_fire, dut.down_beat,
                                                  dut.up_fire, dut.up_beat)
            for d, fire, beat in (("down", *seen[:2]), ("up", *seen[2:])):
                if fire:
                    self.beats[d].append((cycle, int(beat.data), int(beat.last)))
            cycle += 1
            assert cycle < MAX_CYCLES, "the link stopped moving beats"
        for d in want:
            ctx.set(getattr(dut, f"{d}_stall"), 0)
        for _ in range(8):      # nothing more may cross
            _, _, down, up = await ctx.tick().sample(dut.down_fire, dut.up_fire)
            assert not down and not up, "a beat crossed after every message was delivered"
        self.malformed = (ctx.get(dut.host_malformed), ctx.get(dut.dev_malformed))

    async def wires(self, ctx):
        """Closes the LinkPorts' wires (``link`` configurations) through seeded faulty
        channels of the link-fault agent, one cycle of wire as on a simulator."""
        dut = self.dut
        seeds = derive_seeds(self.rng.getrandbits(32), 2)
        channels = [(FaultyChannel(len(getattr(dut, src).flit), self.faults, seed),
                     getattr(dut, src), getattr(dut, dst))
                    for seed, (src, dst) in zip(seeds, WIRES.values(), strict=True)]
        while True:
            sampled = []
            for _, src, _ in channels:
                sampled += [src.valid, src.sop, src.flit]
            _, _, *seen = await ctx.tick().sample(*sampled)
            for i, (channel, _, dst) in enumerate(channels):
                valid, sop, flit = seen[3 * i:3 * i + 3]
                out = channel.step(Flit(sop, flit) if valid else None)
                ctx.set(dst.valid, out is not None)
                if out is not None:
                    ctx.set(dst.sop, out.sop)
                    ctx.set(dst.flit, out.data)
            self.wire_counts = [channel.counts() for channel, _, _ in channels]

    def run(self) -> RoundTrip:
        sim = Simulator(self.dut)
        sim.add_clock(1e-6)
        sim.add_testbench(self.link)
        for kind in IoKind:
            sim.add_testbench(self.source(kind))
            sim.add_testbench(self.sink(kind))
        if self.dut.link is not None:
            sim.add_testbench(self.wires, background=True)
        sim.run()
        return self

    def messages(self, direction: str) -> list[list[int]]:
        out, current = [], []
        for _, word, last in self.beats[direction]:
            current.append(word)
            if last:
                out.append(current)
                current = []
        assert not current, f"{direction}: the beats end inside a message"
        return out

    def check(self) -> None:
        assert not self.violations, self.violations[:3]
        for kind in IoKind:
            assert self.got[kind] == self.sent[kind], f"{kind.name}: lost, reordered or changed"
        down = self.messages("down")
        assert down == [encode(IoKind.REQ, r) for r in self.sent[IoKind.REQ]]
        up = self.messages("up")
        for kind in (IoKind.RESP, IoKind.IRQ):
            mine = [words for words in up if decode(words).kind == kind]
            assert mine == [encode(kind, r) for r in self.sent[kind]], kind.name
        assert len(up) == len(self.sent[IoKind.RESP]) + len(self.sent[IoKind.IRQ])
        assert self.malformed == (0, 0)


# (idle, backpressure, stall): everything at once, and slow consumers fed at full rate (so
# records pile up in front of them and the decoders must stall the link).
PROFILES = {"mixed": (0.3, 0.5, 0.2), "slow_sinks": (0.0, 0.8, 0.0)}


@pytest.mark.parametrize("profile", sorted(PROFILES))
@pytest.mark.parametrize("config", sorted(CONFIGS))
@pytest.mark.parametrize("seed", [SEED, SEED + 1])
def test_round_trip_with_backpressure(config, seed, profile):
    print(f"seed {seed}, config {config}, profile {profile}")
    rng = random.Random(seed)
    counts = {IoKind.REQ: 60, IoKind.RESP: 50, IoKind.IRQ: 40}
    idle, backpressure, stall = PROFILES[profile]
    cfg = CONFIGS[config]
    bench = RoundTrip(cfg["widths"], counts, rng, idle=idle, backpressure=backpressure,
                      stall=stall, fifo_depth=cfg.get("fifo_depth", 4), link=cfg.get("link"),
                      faults=LINK_FAULTS if "link" in cfg and stall else None).run()
    bench.check()
    if "link" in cfg:
        print("wires:", bench.wire_counts)
        assert all(c["forwarded"] > 0 for c in bench.wire_counts)


def test_full_throughput_without_backpressure():
    """No idle, no stall, no backpressure: requests cross at one beat per cycle, and the
    merged responses and interrupts lose only the merge's switch cycle."""
    rng = random.Random(SEED)
    n = 40
    bench = RoundTrip(CONFIGS["default"]["widths"],
                      {IoKind.REQ: n, IoKind.RESP: n, IoKind.IRQ: n}, rng,
                      idle=0.0, backpressure=0.0, stall=0.0).run()
    bench.check()
    down = [cycle for cycle, _, _ in bench.beats["down"]]
    assert down[-1] - down[0] == 4 * n - 1, "request beats are not back to back"
    up = [cycle for cycle, _, _ in bench.beats["up"]]
    # Alternating RESP/IRQ messages: 3 beats each + one cycle per switch.
    assert up[-1] - up[0] <= 4 * 2 * n, up[-1] - up[0]
    kinds = [decode(words).kind for words in bench.messages("up")]
    assert all(a != b for a, b in zip(kinds, kinds[1:], strict=False)), "merge is not fair"


# ================================================================ malformed messages
def malformed_mix(layouts, accept, rng: random.Random, count: int) -> list[list[int]]:
    """Well-formed messages of the accepted kinds mixed with every kind of malformed one."""
    messages = []
    for _ in range(count):
        kind = rng.choice(list(IoKind))
        good = encode(kind, random_record(layouts[kind], rng))
        choice = rng.randrange(8)
        if choice == 0:
            good[0] = (good[0] & ~0xF) | rng.choice([0, 4, 7, 15])   # unknown kind
        elif choice == 1:
            good = good[:rng.randrange(1, len(good))]              # cut short
        elif choice == 2:
            good = good + [rng.getrandbits(32) for _ in range(rng.randint(1, 5))]  # overlong
        messages.append(good)
    return messages


def drive_messages(dut_name: str, seed: int) -> None:
    rng = random.Random(seed)
    print(f"seed {seed}")
    widths = CONFIGS["default"]["widths"]
    layouts = record_layouts(**widths)
    args = (layouts[IoKind.REQ], layouts[IoKind.RESP], layouts[IoKind.IRQ])
    if dut_name == "host":
        dut = IoTunnelHost(*args)
        accept = (IoKind.RESP, IoKind.IRQ)
        outputs = {IoKind.RESP: dut.resp, IoKind.IRQ: dut.irq}
    else:
        dut = IoTunnelDevice(*args)
        accept = (IoKind.REQ,)
        outputs = {IoKind.REQ: dut.req}
    messages = malformed_mix(layouts, accept, rng, 150)
    expected: dict[IoKind, list[dict]] = {kind: [] for kind in outputs}
    bad = 0
    for words in messages:
        try:
            msg = decode(words, accept)
        except MalformedIoMessage:
            bad += 1
            continue
        widths_of = {name: f.width for name, f in layouts[msg.kind]}
        expected[msg.kind].append({name: value & ((1 << widths_of[name]) - 1)
                                   for name, value in msg.fields.items()})
    assert bad > 30 and all(expected.values()), "the mix must hold both good and bad messages"
    got: dict[IoKind, list[dict]] = {kind: [] for kind in outputs}
    result = {}

    async def source(ctx):
        src = random.Random(rng.getrandbits(32))
        for words in messages:
            for i, word in enumerate(words):
                while src.random() < 0.2:
                    await ctx.tick()
                ctx.set(dut.from_link.payload, {"data": word, "last": i == len(words) - 1})
                ctx.set(dut.from_link.valid, 1)
                await ctx.tick().until(dut.from_link.ready)
                ctx.set(dut.from_link.valid, 0)
        for _ in range(4):
            await ctx.tick()
        result["malformed"] = ctx.get(dut.malformed)

    def sink(kind):
        async def bench(ctx):
            port, snk = outputs[kind], random.Random(rng.getrandbits(32))
            cycles = 0
            while len(got[kind]) < len(expected[kind]):
                ctx.set(port.ready, snk.random() >= 0.4)
                _, _, valid, ready, payload = await ctx.tick().sample(port.valid, port.ready,
                                                                       port.payload)
                if valid and ready:
                    got[kind].append(as_dict(payload))
                cycles += 1
                assert cycles < MAX_CYCLES, f"{kind.name}: hung"
            ctx.set(port.ready, 1)
        return bench

    run_sim(dut, source, *(sink(kind) for kind in outputs))
    assert got == expected
    assert result["malformed"] == bad


@pytest.mark.parametrize("side", ["host", "device"])
def test_malformed_messages_are_dropped_and_counted(side):
    drive_messages(side, SEED + (side == "device"))


def test_encoder_output_is_chunk_beats():
    enc = IoEncoder(IoKind.RESP, record_layouts(2, 8, 9, 2)[IoKind.RESP])
    assert enc.message.signature.members["payload"].shape is ChunkBeat


def test_a_stalled_interrupt_consumer_lets_responses_pass():
    """IRQ, 5 RESPs, IRQ, RESP with the interrupt consumer stalled: the 5 responses pass the
    waiting interrupt; the second interrupt's last beat waits (so the last response too)
    until the consumer takes interrupts again; then everything arrives in order."""
    lay = record_layouts(slot=2, tag=8, addr=9, vector=2)
    dut = IoTunnelHost(lay[IoKind.REQ], lay[IoKind.RESP], lay[IoKind.IRQ])
    rng = random.Random(SEED)
    kinds = [IoKind.IRQ, *[IoKind.RESP] * 5, IoKind.IRQ, IoKind.RESP]
    records = [(kind, random_record(lay[kind], rng)) for kind in kinds]
    got: list[tuple[str, int, IoKind]] = []
    release = 200

    async def source(ctx):
        for kind, record in records:
            words = encode(kind, record)
            for i, word in enumerate(words):
                ctx.set(dut.from_link.payload, {"data": word, "last": i == len(words) - 1})
                ctx.set(dut.from_link.valid, 1)
                await ctx.tick().until(dut.from_link.ready)
            ctx.set(dut.from_link.valid, 0)

    async def sink(ctx):
        ctx.set(dut.resp.ready, 1)
        for cycle in range(release + 50):
            ctx.set(dut.irq.ready, cycle >= release)
            _, _, *seen = await ctx.tick().sample(dut.resp.valid, dut.resp.payload,
                                                  dut.irq.valid, dut.irq.ready, dut.irq.payload)
            if seen[0]:
                got.append((cycle, IoKind.RESP, as_dict(seen[1])))
            if seen[2] and seen[3]:
                got.append((cycle, IoKind.IRQ, as_dict(seen[4])))

    run_sim(dut, source, sink)
    by_kind = {kind: [r for c, k, r in got if k == kind] for kind in (IoKind.RESP, IoKind.IRQ)}
    for kind in by_kind:
        assert by_kind[kind] == [r for k, r in records if k == kind], kind.name
    resp_cycles = [c for c, k, _ in got if k == IoKind.RESP]
    assert all(c < release for c in resp_cycles[:5]), "responses waited for the interrupt"
    assert resp_cycles[5] > release, "the second interrupt did not hold the stream"
