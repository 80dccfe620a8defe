"""hdl/vf_unit.py in amaranth.sim, checked against one model.state.GoldenVF per slot."""

from __future__ import annotations

import random

import pytest
from amaranth.hdl import ClockDomain, Fragment, Module, Signal
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from hdl.vf_unit import DIGEST_LATENCY, VFUnit, word_hash
from model.state import MSIX_ADDR_LO, MSIX_CTRL, MSIX_DATA, GoldenVF, ImageLayout, Op, image_digest
from model.state import word_hash as model_word_hash
from tb.vf_unit.stimulus import random_request
from tests.hdl.simutil import stream_get, stream_put

LAYOUT = ImageLayout(csr_words=4, msix_vectors=4, mem_words=64, block_words=8)
N_SLOTS = 3


def simulate(dut, *benches, background=()) -> None:
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    for bench in benches:
        sim.add_testbench(bench)
    for bench in background:
        sim.add_testbench(bench, background=True)
    sim.run()


def blocks_of(bits: int) -> set[int]:
    return {b for b in range(bits.bit_length()) if bits >> b & 1}


class Harness:
    """Drives a VFUnit and keeps one GoldenVF per slot in step with it."""

    def __init__(self, dut: VFUnit, rng: random.Random, irq_backpressure: float = 0.0,
                 resp_delay: int = 0):
        self.dut, self.rng = dut, rng
        self.layout = dut.layout
        self.golden = [GoldenVF(dut.layout) for _ in range(dut.n_slots)]
        self.irq_backpressure, self.resp_delay = irq_backpressure, resp_delay
        self.irqs: list[tuple[int, int, int, int]] = []
        self.expected_irqs: list[tuple[int, int, int, int]] = []
        self.tag = 0
        # Off while another bench changes the image or the bitmaps behind the golden's back.
        self.check_each_response = True
        self.hold_replays = 0     # interrupts sent by an irq_hold release
        self.unmask_replays = 0   # interrupts sent by a WRITE/ADD to a vector-control word

    async def irq_collector(self, ctx) -> None:
        irq = self.dut.irq
        while True:
            ctx.set(irq.ready, self.rng.random() >= self.irq_backpressure)
            _, _, valid, ready, payload = await ctx.tick().sample(irq.valid, irq.ready,
                                                                   irq.payload)
            if valid and ready:
                self.irqs.append((payload.slot, payload.vector, payload.addr, payload.data))

    def _take_golden_irqs(self, slot: int) -> None:
        golden = self.golden[slot]
        self.expected_irqs += [(slot, i.vector, i.addr, i.data) for i in golden.interrupts]
        golden.interrupts.clear()

    async def request(self, ctx, slot: int, op: Op, addr: int, data: int = 0) -> tuple[int, int]:
        self.tag = (self.tag + 1) % 256
        await stream_put(ctx, self.dut.req, {"slot": slot, "op": op, "addr": addr,
                                             "data": data, "tag": self.tag})
        if self.resp_delay:
            await ctx.tick().repeat(self.rng.randint(1, self.resp_delay))
        resp = await stream_get(ctx, self.dut.resp)
        exp_data, exp_error = self.golden[slot].request(op, addr, data)
        if op in (Op.WRITE, Op.ADD) and self.golden[slot].interrupts:
            self.unmask_replays += 1
        self._take_golden_irqs(slot)
        what = f"{op.name} slot={slot} addr={addr} data={data:#x}"
        assert (resp.slot, resp.tag) == (slot, self.tag), what
        assert (resp.data, resp.error) == (exp_data, int(exp_error)), what
        assert self.irqs == self.expected_irqs, what
        if self.check_each_response:
            await self.check_digest_and_count(ctx, what)
        return resp.data, resp.error

    async def check_digest_and_count(self, ctx, what: str = "") -> None:
        """After the last write's delta reached its digest (``DIGEST_LATENCY``)."""
        await ctx.tick().repeat(DIGEST_LATENCY)
        digests = ctx.get(self.dut.digest)
        counts = ctx.get(self.dut.dirty_count)
        for slot, golden in enumerate(self.golden):
            assert digests[slot] == image_digest(golden.image), f"digest slot {slot}: {what}"
            assert counts[slot] == len(golden.dirty), f"dirty_count slot {slot}: {what}"

    async def wait_idle(self, ctx) -> None:
        full = (1 << self.dut.n_slots) - 1
        if ctx.get(self.dut.idle) != full:
            await ctx.tick().until(self.dut.idle == full)

    async def set_hold(self, ctx, mask: int) -> None:
        """Change irq_hold at a quiet point; a release replays pending vectors."""
        ctx.set(self.dut.irq_hold, mask)
        await ctx.tick()
        for slot, golden in enumerate(self.golden):
            hold = bool(mask >> slot & 1)
            if hold != golden.irq_hold:
                golden.set_irq_hold(hold)
                self.hold_replays += len(golden.interrupts)
                self._take_golden_irqs(slot)
        await self.wait_idle(ctx)
        await ctx.tick().repeat(2)  # the last replay write reaches the digest
        assert self.irqs == self.expected_irqs
        await self.check_digest_and_count(ctx, f"irq_hold={mask:#b}")

    async def read_dirty(self, ctx, slot: int) -> set[int]:
        dut, blocks = self.dut, set()
        for word in range(self.layout.dirty_words):
            ctx.set(dut.dirty_rd_en, 1)
            ctx.set(dut.dirty_rd_slot, slot)
            ctx.set(dut.dirty_rd_word, word)
            await ctx.tick()
            ctx.set(dut.dirty_rd_en, 0)
            blocks |= {32 * word + b for b in blocks_of(ctx.get(dut.dirty_rd_bits))}
        return blocks

    async def check_dirty(self, ctx, slot: int) -> None:
        got = await self.read_dirty(ctx, slot)
        assert got == self.golden[slot].read_and_clear_dirty(), f"dirty slot {slot}"
        assert ctx.get(self.dut.dirty_count)[slot] == 0

    def random_request(self) -> tuple[int, Op, int, int]:
        return random_request(self.rng, self.layout, self.dut.n_slots)


# ---------------------------------------------------------------- constructor
@pytest.mark.parametrize("kwargs, exc, message", [
    ({"layout": "x"}, TypeError, "VFUnit layout must be an ImageLayout, not 'x'"),
    ({"n_slots": 0}, ValueError, "VFUnit n_slots must be between 1 and 256, not 0"),
    ({"n_slots": 257}, ValueError, "VFUnit n_slots must be between 1 and 256, not 257"),
    ({"n_slots": 2.0}, TypeError, "VFUnit n_slots must be an integer, not 2.0"),
    ({"service_latency": 1}, ValueError,
     "VFUnit service_latency must be between 2 and 4096, not 1"),
    ({"service_latency": 4097}, ValueError,
     "VFUnit service_latency must be between 2 and 4096, not 4097"),
    ({"service_latency": True}, TypeError, "VFUnit service_latency must be an integer, not True"),
    ({"tag_bits": 0}, ValueError, "VFUnit tag_bits must be between 1 and 16, not 0"),
    ({"tag_bits": 17}, ValueError, "VFUnit tag_bits must be between 1 and 16, not 17"),
])
def test_constructor_errors(kwargs, exc, message):
    args = {"layout": LAYOUT, "n_slots": 2, "service_latency": 4, **kwargs}
    with pytest.raises(exc) as info:
        VFUnit(**args)
    assert str(info.value) == message


def test_ports_follow_parameters():
    dut = VFUnit(LAYOUT, 5, 3, tag_bits=4)
    Fragment.get(dut, None)  # elaborates for a slot count that is not a power of two
    assert len(dut.sa_rd_addr) == 3 + LAYOUT.addr_bits
    assert len(dut.dirty_rd_word) == 1
    assert len(dut.digest.as_value()) == 5 * 32
    assert len(dut.idle) == len(dut.quiesce) == len(dut.irq_hold) == len(dut.dirty_clear) == 5
    assert len(dut.resp.payload.tag) == 4


def test_word_hash_matches_model():
    rng = random.Random(7)
    m = Module()
    offset, value, out = Signal(12), Signal(32), Signal(32)
    m.d.comb += out.eq(word_hash(offset, value))
    cases = [(0, 0), (4095, 0xFFFF_FFFF)] + [(rng.getrandbits(12), rng.getrandbits(32))
                                            for _ in range(200)]

    async def bench(ctx):
        for off, val in cases:
            ctx.set(offset, off)
            ctx.set(value, val)
            assert ctx.get(out) == model_word_hash(off, val), (off, val)

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()


def test_every_memory_is_simple_dual_port():
    """One write port and one read port per memory: what ECP5 DP16KD and iCE40 SB_RAM40_4K
    blocks offer (a memory with more ports is built from flip-flops)."""
    def fragments(fragment):
        yield fragment
        for sub, _, _ in fragment.subfragments:
            yield from fragments(sub)

    dut = VFUnit(LAYOUT, N_SLOTS, service_latency=2)
    memories = [origin for fragment in fragments(Fragment.get(dut, None))
                for origin in fragment.origins or () if isinstance(origin, Memory)]
    assert len(memories) == 2 * N_SLOTS   # per slot: a service copy and a state-port copy
    for memory in memories:
        assert (len(memory.write_ports), len(memory.read_ports)) == (1, 1)
        assert memory.depth == LAYOUT.stride


# ---------------------------------------------------------------- request semantics
WIDE_MSIX = ImageLayout(csr_words=2, msix_vectors=40, mem_words=16, block_words=8)


@pytest.mark.parametrize("layout, n_slots, seed, irq_backpressure, resp_delay", [
    (LAYOUT, N_SLOTS, 1, 0.0, 0),
    (LAYOUT, N_SLOTS, 2, 0.5, 3),
    (LAYOUT, 4, 3, 0.2, 1),
    (WIDE_MSIX, 2, 4, 0.3, 2),   # two PBA words, vectors beyond bit 31
], ids=["plain", "backpressure", "four-slots", "wide-msix"])
def test_random_requests_match_golden(layout, n_slots, seed, irq_backpressure, resp_delay):
    rng = random.Random(seed)
    dut = VFUnit(layout, n_slots, service_latency=3)
    h = Harness(dut, rng, irq_backpressure, resp_delay)

    async def bench(ctx):
        await h.check_digest_and_count(ctx, "reset")
        hold = 0
        for _ in range(600):
            await h.request(ctx, *h.random_request())
            action = rng.random()
            if action < 0.06:
                hold ^= 1 << rng.randrange(n_slots)
                await h.set_hold(ctx, hold)
            elif action < 0.11:
                await h.check_dirty(ctx, rng.randrange(n_slots))
            elif action < 0.13:
                slot = rng.randrange(n_slots)
                ctx.set(dut.dirty_clear, 1 << slot)
                await ctx.tick().repeat(2)
                ctx.set(dut.dirty_clear, 0)
                h.golden[slot].dirty.clear()
                await h.check_digest_and_count(ctx, "dirty_clear")
        await h.set_hold(ctx, 0)
        for slot in range(n_slots):
            await h.check_dirty(ctx, slot)
        kinds = {(i[0], i[1]) for i in h.irqs}
        assert len(kinds) >= 2 * n_slots, "too few distinct interrupts: the test lost its reach"
        assert h.hold_replays > 0 and h.unmask_replays > 0, "no replay exercised"
    simulate(dut, bench, background=[h.irq_collector])


def test_msix_mask_pba_hold_and_replay():
    """The MSI-X rules step by step, on two slots at once."""
    rng = random.Random(3)
    dut = VFUnit(LAYOUT, 2, service_latency=2)
    h = Harness(dut, rng)
    lay = LAYOUT

    async def bench(ctx):
        for slot in range(2):
            for v in range(lay.msix_vectors):
                await h.request(ctx, slot, Op.WRITE, lay.msix_word(v, MSIX_ADDR_LO),
                                0xFEE0_0000 + 16 * v + slot)
                await h.request(ctx, slot, Op.WRITE, lay.msix_word(v, MSIX_DATA), 0x40 + v)
        await h.request(ctx, 0, Op.NOTIFY, 0, 1)                    # sent
        assert h.irqs[-1] == (0, 1, 0xFEE0_0010, 0x41)
        await h.request(ctx, 0, Op.WRITE, lay.msix_word(2, MSIX_CTRL), 1)   # mask 2
        await h.request(ctx, 0, Op.NOTIFY, 0, 2)                    # pending
        assert (await h.request(ctx, 0, Op.READ, lay.pba_base))[0] == 0b100
        await h.request(ctx, 0, Op.NOTIFY, 0, 2)                    # still one pending bit
        await h.request(ctx, 0, Op.WRITE, lay.msix_word(2, MSIX_CTRL), 0)   # unmask: replay
        assert h.irqs[-1] == (0, 2, 0xFEE0_0020, 0x42)
        assert (await h.request(ctx, 0, Op.READ, lay.pba_base))[0] == 0
        await h.set_hold(ctx, 0b11)
        for v in (0, 3, 3):
            await h.request(ctx, 1, Op.NOTIFY, 0, v)
        await h.request(ctx, 0, Op.NOTIFY, 0, 1)
        await h.request(ctx, 1, Op.WRITE, lay.msix_word(0, MSIX_CTRL), 1)   # mask while held
        count = len(h.irqs)
        await h.set_hold(ctx, 0b01)                                   # release slot 1 only
        assert h.irqs[count:] == [(1, 3, 0xFEE0_0031, 0x43)]
        assert (await h.request(ctx, 1, Op.READ, lay.pba_base))[0] == 0b1
        await h.set_hold(ctx, 0)
        assert h.irqs[-1] == (0, 1, 0xFEE0_0010, 0x41)
        await h.request(ctx, 1, Op.ADD, lay.msix_word(0, MSIX_CTRL), 0xFFFF_FFFF)  # 1 -> 0
        assert h.irqs[-1] == (1, 0, 0xFEE0_0001, 0x40)
        for data in (lay.msix_vectors, 0xFFFF_FFFF):
            assert (await h.request(ctx, 0, Op.NOTIFY, 0, data))[1] == 1
        assert (await h.request(ctx, 0, Op.WRITE, lay.image_words, 5))[1] == 1
        assert (await h.request(ctx, 0, Op.READ, lay.stride - 1))[1] == 1
        for slot in range(2):
            await h.check_dirty(ctx, slot)

    simulate(dut, bench, background=[h.irq_collector])


def test_resuming_lasts_the_release_replay_and_not_the_requests_after_it():
    """``resuming`` (the end of a migration's downtime): from the irq_hold release until the
    slot's pending vectors were sent; a request served after that is not resuming, though
    the slot is not idle (the downtime bug: it counted every busy cycle after the move)."""
    dut = VFUnit(LAYOUT, 2, service_latency=2)
    h = Harness(dut, random.Random(4))
    lay, trace = LAYOUT, []

    async def sampler(ctx):
        async for _, _, resuming, idle, valid, ready in ctx.tick().sample(
                dut.resuming, dut.idle, dut.irq.valid, dut.irq.ready):
            trace.append((resuming & 1, idle & 1, valid and ready))

    async def bench(ctx):
        for v in range(lay.msix_vectors):
            await h.request(ctx, 0, Op.WRITE, lay.msix_word(v, MSIX_ADDR_LO), 0xFEE0_0000 + v)
        await h.set_hold(ctx, 0b01)
        for v in (0, 2):
            await h.request(ctx, 0, Op.NOTIFY, 0, v)                  # pending while held
        assert not any(r for r, _, _ in trace[-4:])                   # held is not resuming
        start = len(trace)
        ctx.set(dut.irq_hold, 0)
        h.golden[0].set_irq_hold(False)
        h._take_golden_irqs(0)
        await ctx.tick()                                              # the release is seen
        await h.request(ctx, 0, Op.READ, 0)                           # right after the replay
        await h.request(ctx, 0, Op.READ, 1)
        after = trace[start:]
        sent = [i for i, (_, _, irq) in enumerate(after) if irq]
        resuming = [i for i, (r, _, _) in enumerate(after) if r]
        # one stretch, from the release, over both replays and the scan of the vectors left
        assert len(sent) == 2 and resuming == list(range(resuming[0], resuming[-1] + 1))
        assert resuming[0] <= 1 and sent[-1] <= resuming[-1] <= sent[-1] + 2 * lay.msix_vectors
        busy_after = [i for i, (r, idle, _) in enumerate(after) if i > resuming[-1] and not idle]
        assert busy_after and not any(after[i][0] for i in busy_after)

    simulate(dut, bench, background=[h.irq_collector, sampler])


def test_invalid_slot_is_an_error():
    dut = VFUnit(LAYOUT, 3, service_latency=2)
    h = Harness(dut, random.Random(0))

    async def bench(ctx):
        await stream_put(ctx, dut.req, {"slot": 3, "op": Op.WRITE, "addr": 0, "data": 9,
                                        "tag": 7})
        resp = await stream_get(ctx, dut.resp)
        assert (resp.slot, resp.tag, resp.error, resp.data) == (3, 7, 1, 0)
        await h.check_digest_and_count(ctx)

    simulate(dut, bench, background=[h.irq_collector])


def test_reset_sweeps_memory_to_match_digest():
    """A reset after traffic zeroes the memory, so the digests' reset value stays true."""
    dut = VFUnit(LAYOUT, 2, service_latency=2)
    h = Harness(dut, random.Random(0))
    depth = 2 * LAYOUT.stride
    top = Module()
    top.domains.sync = sync = ClockDomain()
    top.submodules.dut = dut

    async def bench(ctx):
        cycles = 0
        while not ctx.get(dut.idle) == 0b11:
            await ctx.tick()
            cycles += 1
        assert cycles == depth, "the reset sweep writes one word per cycle"
        for addr in (0, LAYOUT.pba_base, LAYOUT.image_words - 1):
            await h.request(ctx, 1, Op.WRITE, addr, 0xABCD_0000 + addr)
        ctx.set(sync.rst, 1)
        await ctx.tick()
        ctx.set(sync.rst, 0)
        assert ctx.get(dut.idle) == 0 and not ctx.get(dut.req.ready)
        h.golden = [GoldenVF(LAYOUT) for _ in range(2)]
        await h.wait_idle(ctx)
        await h.check_digest_and_count(ctx, "after reset")
        for addr in (0, LAYOUT.pba_base, LAYOUT.image_words - 1):
            await h.request(ctx, 1, Op.READ, addr)

    simulate(top, bench, background=[h.irq_collector])


# ---------------------------------------------------------------- timing and backpressure
@pytest.mark.parametrize("latency", [2, 6])
def test_latency_and_throughput(latency):
    dut = VFUnit(LAYOUT, 2, service_latency=latency)
    accepted: list[int] = []
    first_valid: dict[int, int] = {}
    n_requests = 8

    async def monitor(ctx):
        cycle = 0
        while True:
            _, _, rv, rr, sv = await ctx.tick().sample(dut.req.valid, dut.req.ready,
                                                       dut.resp.valid)
            if rv and rr:
                accepted.append(cycle)
            if sv and len(accepted) not in first_valid:
                first_valid[len(accepted)] = cycle
            cycle += 1

    async def sink(ctx):
        ctx.set(dut.resp.ready, 1)
        ctx.set(dut.irq.ready, 1)

    async def source(ctx):
        ops = [Op.READ, Op.WRITE, Op.ADD, Op.READ]
        for i in range(n_requests):
            await stream_put(ctx, dut.req, {"slot": i % 2, "op": ops[i % 4], "addr": i,
                                            "data": i, "tag": i})
        await ctx.tick().until(dut.resp.valid)
        await ctx.tick()

    simulate(dut, source, sink, background=[monitor])
    assert len(accepted) == n_requests
    for i, cycle in enumerate(accepted):
        assert first_valid[i + 1] - cycle == latency
    gaps = {b - a for a, b in zip(accepted, accepted[1:], strict=False)}
    assert gaps == {latency + 1}


def test_work_cycles_of_msix_paths():
    """With the shortest service latency the MSI-X paths show their own cycle counts."""
    dut = VFUnit(LAYOUT, 1, service_latency=2)
    lay = LAYOUT

    async def cycles(ctx, op, addr=0, data=0) -> int:
        await stream_put(ctx, dut.req, {"op": op, "addr": addr, "data": data})
        count = 1
        while not ctx.get(dut.resp.valid):
            await ctx.tick()
            count += 1
        await stream_get(ctx, dut.resp)
        return count

    async def bench(ctx):
        ctx.set(dut.irq.ready, 1)
        ctrl = lay.msix_word(1, MSIX_CTRL)
        assert await cycles(ctx, Op.NOTIFY, data=1) == 5           # sent
        assert await cycles(ctx, Op.WRITE, ctrl, 1) == 4            # mask, nothing pending
        assert await cycles(ctx, Op.NOTIFY, data=1) == 3            # goes pending
        assert await cycles(ctx, Op.READ, lay.pba_base) == 2
        assert await cycles(ctx, Op.WRITE, ctrl, 0) == 8            # unmask delivers it
        assert await cycles(ctx, Op.NOTIFY, data=lay.msix_vectors) == 2   # error

    simulate(dut, bench)


def test_irq_and_resp_backpressure_stall_without_loss():
    dut = VFUnit(LAYOUT, 1, service_latency=2)
    lay = LAYOUT

    async def bench(ctx):
        await stream_put(ctx, dut.req, {"op": Op.WRITE, "addr": lay.msix_word(1, MSIX_DATA),
                                        "data": 0x77, "tag": 1})
        await stream_get(ctx, dut.resp)
        await stream_put(ctx, dut.req, {"op": Op.NOTIFY, "data": 1, "tag": 2})
        await ctx.tick().until(dut.irq.valid)
        for _ in range(20):  # irq not taken: no response
            assert ctx.get(dut.irq.valid) and not ctx.get(dut.resp.valid)
            assert ctx.get(dut.idle) == 0
            await ctx.tick()
        irq = await stream_get(ctx, dut.irq)
        assert (irq.vector, irq.data) == (1, 0x77)
        await ctx.tick().until(dut.resp.valid)
        ctx.set(dut.req.valid, 1)  # offered but must wait: the response was not taken yet
        ctx.set(dut.req.payload, {"op": Op.READ, "addr": lay.msix_word(1, MSIX_DATA), "tag": 3})
        for _ in range(10):
            assert ctx.get(dut.resp.valid) and ctx.get(dut.resp.payload).tag == 2
            assert not ctx.get(dut.req.ready)
            await ctx.tick()
        ctx.set(dut.req.valid, 0)
        assert (await stream_get(ctx, dut.resp)).tag == 2
        await stream_put(ctx, dut.req, {"op": Op.READ, "addr": lay.msix_word(1, MSIX_DATA),
                                        "tag": 3})
        resp = await stream_get(ctx, dut.resp)
        assert (resp.tag, resp.data) == (3, 0x77)
        assert not ctx.get(dut.irq.valid)

    simulate(dut, bench)


def test_quiesce_holds_requests_and_reports_idle():
    dut = VFUnit(LAYOUT, 2, service_latency=8)

    async def bench(ctx):
        ctx.set(dut.irq.ready, 1)
        await ctx.tick().until(dut.idle == 0b11)   # the reset sweep is over
        ctx.set(dut.quiesce, 0b10)
        ctx.set(dut.req.valid, 1)
        ctx.set(dut.req.payload, {"slot": 1, "op": Op.WRITE, "addr": 3, "data": 5, "tag": 1})
        for _ in range(10):
            await ctx.tick()
            assert not ctx.get(dut.req.ready) and ctx.get(dut.idle) == 0b11
        ctx.set(dut.quiesce, 0)
        await ctx.tick().until(dut.req.ready)
        ctx.set(dut.req.valid, 0)
        assert ctx.get(dut.idle) == 0b01                # slot 1 in service
        ctx.set(dut.quiesce, 0b10)                      # quiesce while in flight: drain
        assert ctx.get(dut.idle) == 0b01
        resp = await stream_get(ctx, dut.resp)
        assert (resp.slot, resp.error) == (1, 0)
        assert ctx.get(dut.idle) == 0b11
        # slot 0 still served while slot 1 is quiesced
        await stream_put(ctx, dut.req, {"slot": 0, "op": Op.READ, "addr": 3, "tag": 2})
        assert ctx.get(dut.idle) == 0b10
        assert (await stream_get(ctx, dut.resp)).data == 0
        # an irq_hold release is not idle until its replay ran
        ctx.set(dut.irq_hold, 0b10)
        await ctx.tick()
        ctx.set(dut.irq_hold, 0)
        assert ctx.get(dut.idle) == 0b01
        await ctx.tick().until(dut.idle == 0b11)

    simulate(dut, bench)


# ---------------------------------------------------------------- dirty tracking
def test_dirty_read_clears_atomically_under_traffic():
    """A reader polls every cycle while writes run: the union is exactly the golden set."""
    lay = ImageLayout(csr_words=4, msix_vectors=4, mem_words=200, block_words=4)
    assert lay.dirty_words == 2
    dut = VFUnit(lay, 2, service_latency=2)
    rng = random.Random(11)
    h = Harness(dut, rng)
    h.check_each_response = False
    seen: list[set[int]] = [set(), set()]
    state = {"done": False}

    async def writer(ctx):
        for _ in range(60):
            slot = rng.randrange(2)
            await h.request(ctx, slot, rng.choice([Op.WRITE, Op.ADD]),
                            rng.randrange(lay.image_words), rng.getrandbits(32))
        state["done"] = True

    async def reader(ctx):
        last = None
        while not state["done"] or last is not None:
            if last is not None:
                slot, word = last
                bits = ctx.get(dut.dirty_rd_bits)
                seen[slot] |= {32 * word + b for b in blocks_of(bits)}
            last = None
            if not state["done"]:
                last = (rng.randrange(2), rng.randrange(2))
                ctx.set(dut.dirty_rd_en, 1)
                ctx.set(dut.dirty_rd_slot, last[0])
                ctx.set(dut.dirty_rd_word, last[1])
            else:
                ctx.set(dut.dirty_rd_en, 0)
            await ctx.tick()
        ctx.set(dut.dirty_rd_en, 0)
        for slot in range(2):
            seen[slot] |= await h.read_dirty(ctx, slot)
            assert seen[slot] == h.golden[slot].read_and_clear_dirty()
            assert ctx.get(dut.dirty_count)[slot] == 0

    simulate(dut, writer, reader, background=[h.irq_collector])


# ---------------------------------------------------------------- state-access port
def test_state_port_write_to_missing_slot_is_dropped():
    dut = VFUnit(LAYOUT, 1, service_latency=2)   # the slot field is 1 bit: slot 1 is missing
    h = Harness(dut, random.Random(0))

    async def bench(ctx):
        await h.wait_idle(ctx)
        ctx.set(dut.sa_wr_en, 1)
        ctx.set(dut.sa_wr_addr, 1 << LAYOUT.addr_bits | 5)
        ctx.set(dut.sa_wr_data, 0x1234)
        await ctx.tick()
        ctx.set(dut.sa_wr_en, 0)
        await h.check_digest_and_count(ctx)
        assert (await h.request(ctx, 0, Op.READ, 5))[0] == 0

    simulate(dut, bench, background=[h.irq_collector])


def test_state_port_writes_update_digest_not_dirty():
    """Back-to-back state-port writes (1/cycle, repeats of one address included) run while
    service WRITEs hit other words of the same slots."""
    rng = random.Random(5)
    dut = VFUnit(LAYOUT, N_SLOTS, service_latency=2)
    h = Harness(dut, rng)
    h.check_each_response = False
    lay = LAYOUT
    split = lay.mem_base + 32     # service below, state port from here on
    state = {"done": False, "writes": 0}

    def flat(slot, addr):
        return slot << lay.addr_bits | addr

    async def service(ctx):
        for _ in range(40):
            await h.request(ctx, rng.randrange(2), Op.WRITE, rng.randrange(split),
                            rng.getrandbits(32))
        state["done"] = True

    async def state_port(ctx):
        await h.wait_idle(ctx)   # the reset sweep is over
        addr = split
        while not state["done"]:
            slot = rng.randrange(2)
            if rng.random() < 0.7:
                addr = rng.randrange(split, lay.image_words)
            value = rng.getrandbits(32)
            ctx.set(dut.sa_wr_en, 1)
            ctx.set(dut.sa_wr_addr, flat(slot, addr))
            ctx.set(dut.sa_wr_data, value)
            h.golden[slot].image[addr] = value   # no dirty mark
            state["writes"] += 1
            await ctx.tick()
        ctx.set(dut.sa_wr_en, 0)
        await h.check_digest_and_count(ctx, "after state-port writes")
        assert state["writes"] > 100
        # read everything back through the state port, one word per cycle, pipelined
        addrs = [(s, a) for s in range(N_SLOTS) for a in range(lay.image_words)]
        ctx.set(dut.sa_rd_en, 1)
        for s, a in addrs:
            ctx.set(dut.sa_rd_addr, flat(s, a))
            await ctx.tick()
            assert ctx.get(dut.sa_rd_data) == h.golden[s].image[a], (s, a)
        ctx.set(dut.sa_rd_en, 0)
        await ctx.tick()
        assert ctx.get(dut.sa_rd_data) == h.golden[s].image[a], "held without sa_rd_en"
        for slot in range(N_SLOTS):
            await h.check_dirty(ctx, slot)

    simulate(dut, service, state_port, background=[h.irq_collector])


def test_state_port_write_is_seen_by_reads_in_the_next_cycle():
    """A state-port write lands a cycle late; reads of the word in the next cycle (state port
    and service) get it by forwarding, as from a plain memory."""
    dut = VFUnit(LAYOUT, 2, service_latency=2)
    h = Harness(dut, random.Random(0))
    addr = LAYOUT.mem_base + 3

    async def bench(ctx):
        await h.wait_idle(ctx)
        for value in (0x1111, 0x2222):
            ctx.set(dut.sa_wr_en, 1)
            ctx.set(dut.sa_wr_addr, 1 << LAYOUT.addr_bits | addr)
            ctx.set(dut.sa_wr_data, value)
            h.golden[1].image[addr] = value
            await ctx.tick()
        ctx.set(dut.sa_wr_en, 0)
        ctx.set(dut.sa_rd_en, 1)
        ctx.set(dut.sa_rd_addr, 1 << LAYOUT.addr_bits | addr)
        await ctx.tick()
        ctx.set(dut.sa_rd_en, 0)
        assert ctx.get(dut.sa_rd_data) == 0x2222
        ctx.set(dut.sa_wr_en, 1)
        ctx.set(dut.sa_wr_data, 0x3333)
        h.golden[1].image[addr] = 0x3333
        await ctx.tick()
        ctx.set(dut.sa_wr_en, 0)
        assert (await h.request(ctx, 1, Op.READ, addr))[0] == 0x3333
        await h.check_digest_and_count(ctx)

    simulate(dut, bench, background=[h.irq_collector])


@pytest.mark.parametrize("sa_slot, waits", [(0, True), (1, False)])
def test_service_write_waits_while_state_port_writes_its_slot(sa_slot, waits):
    """The slot's bank has one write port: a service write waits out a state-port burst into
    the same slot (the DMA cannot be stalled); a burst into another slot costs nothing."""
    dut = VFUnit(LAYOUT, 2, service_latency=2)
    h = Harness(dut, random.Random(0))
    burst, lay = 20, LAYOUT

    async def bench(ctx):
        await h.wait_idle(ctx)
        ctx.set(dut.req.valid, 1)   # taken at once: the unit is idle
        ctx.set(dut.req.payload, {"slot": 0, "op": Op.ADD, "addr": 2, "data": 5, "tag": 1})
        response_at = None
        for cycle in range(burst + 8):
            ctx.set(dut.sa_wr_en, cycle < burst)
            ctx.set(dut.sa_wr_addr, sa_slot << lay.addr_bits | lay.mem_base + cycle)
            ctx.set(dut.sa_wr_data, 0xA000 + cycle)
            if cycle < burst:
                h.golden[sa_slot].image[lay.mem_base + cycle] = 0xA000 + cycle
            if response_at is None and ctx.get(dut.resp.valid):
                response_at = cycle
            await ctx.tick()
            ctx.set(dut.req.valid, 0)
        assert response_at == (burst + 2 if waits else 2)
        assert (await stream_get(ctx, dut.resp)).data == h.golden[0].request(Op.ADD, 2, 5)[0]
        await h.check_digest_and_count(ctx)
        for slot in range(2):
            await h.check_dirty(ctx, slot)

    simulate(dut, bench, background=[h.irq_collector])
