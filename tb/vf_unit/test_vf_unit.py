"""cocotb tests of the VF unit's generated Verilog, scored against one GoldenVF per slot.

Run through tb/vf_unit/test_vf_unit.py (it builds the configuration named in
``VFMIG_BENCH_CONFIG``). Every test logs its seed (tb/common/seeds.py); ``VFMIG_SEED``
reproduces a run.
"""

from __future__ import annotations

import random
from collections import deque

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge

from hdl.formats import irq_layout, vf_request_layout, vf_response_layout
from hdl.vf_unit import DIGEST_LATENCY, SERVICE_DIGEST_LATENCY
from model.state import (
    GoldenVF,
    Op,
    image_digest,
    zero_image_digest,
)
from tb.common.runner import bench_matrix
from tb.common.seeds import bench_seed, generator_seeds
from tb.common.streams import StreamDriver, StreamMonitor
from tb.vf_unit import CONFIGS, VFUnitConfig
from tb.vf_unit.stimulus import random_request


class TB:
    """Drives requests, watches responses and interrupts, predicts both with GoldenVF."""

    def __init__(self, dut, idle: float = 0.0, resp_backpressure: float = 0.0,
                 irq_backpressure: float = 0.0):
        self.dut, self.cfg = dut, VFUnitConfig.from_env()
        self.layout, self.n_slots = self.cfg.layout, self.cfg.n_slots
        seeds = generator_seeds(dut._log, 4, f"config {self.cfg}, idle {idle:.2f}, resp_bp "
                                             f"{resp_backpressure:.2f}, "
                                             f"irq_bp {irq_backpressure:.2f}")
        self.rng = random.Random(seeds[0])
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
        lay, n = self.layout, self.n_slots
        self.req = StreamDriver(dut, "req", dut.clk, vf_request_layout(lay, n, self.cfg.tag_bits),
                                idle_prob=idle, rng=random.Random(seeds[1]))
        self.monitor_args = (seeds[2:], resp_backpressure, irq_backpressure)
        self.golden = [GoldenVF(lay) for _ in range(n)]
        self.in_flight: deque[dict] = deque()
        self.irqs: list[tuple] = []
        self.expected_irqs: list[tuple] = []
        self.errors: list[str] = []
        self.responses = 0
        self.tag = 0
        self.check_each_response = True
        for name in ("sa_rd_en", "sa_rd_addr", "sa_wr_en", "sa_wr_addr", "sa_wr_data",
                     "dirty_rd_en", "dirty_rd_slot", "dirty_rd_word", "dirty_clear", "quiesce",
                     "irq_hold"):
            getattr(dut, name).value = 0

    # -------------------------------------------------------------- plumbing
    async def reset(self) -> None:
        """Reset, wait out the memory sweep, then start the monitors."""
        dut = self.dut
        dut.rst.value = 1
        await ClockCycles(dut.clk, 3)
        dut.rst.value = 0
        # The unit sweeps its memory to zero (one word per cycle), idle low meanwhile; an
        # earlier test in this simulation left data behind. Icarus leaves combinational
        # outputs X until their inputs first change, so only resolved values are checked.
        sweep = self.n_slots * self.layout.stride
        for _ in range(sweep - 1):
            await RisingEdge(dut.clk)
            await ReadOnly()
            for port in (dut.req__ready, dut.idle):
                assert not port.value.is_resolvable or int(port.value) == 0, "sweep too short"
        await RisingEdge(dut.clk)
        (resp_seed, irq_seed), resp_backpressure, irq_backpressure = self.monitor_args
        lay, n = self.layout, self.n_slots
        self.resp = StreamMonitor(dut, "resp", dut.clk, vf_response_layout(n, self.cfg.tag_bits),
                                  backpressure_prob=resp_backpressure,
                                  rng=random.Random(resp_seed), callback=self._on_resp)
        self.irq = StreamMonitor(dut, "irq", dut.clk, irq_layout(lay, n),
                                 backpressure_prob=irq_backpressure,
                                 rng=random.Random(irq_seed), callback=self._on_irq)
        await ReadOnly()
        self.check_state("after reset")
        assert self.digests() == [zero_image_digest(self.layout)] * self.n_slots
        assert int(self.dut.idle.value) == (1 << self.n_slots) - 1
        await RisingEdge(self.dut.clk)

    def digests(self) -> list[int]:
        word = int(self.dut.digest.value)
        return [word >> (32 * s) & 0xFFFF_FFFF for s in range(self.n_slots)]

    def dirty_counts(self) -> list[int]:
        width = len(self.dut.dirty_count) // self.n_slots
        word = int(self.dut.dirty_count.value)
        return [word >> (width * s) & ((1 << width) - 1) for s in range(self.n_slots)]

    def check_state(self, what: str) -> None:
        """Digest and dirty count of every slot against the golden models (call in ReadOnly)."""
        for slot, (digest, count) in enumerate(zip(self.digests(), self.dirty_counts(),
                                                   strict=True)):
            golden = self.golden[slot]
            if digest != image_digest(golden.image):
                self.errors.append(f"{what}: slot {slot} digest {digest:#010x} != "
                                   f"{image_digest(golden.image):#010x}")
            if count != len(golden.dirty):
                self.errors.append(f"{what}: slot {slot} dirty_count {count} != "
                                   f"{len(golden.dirty)}")

    def assert_clean(self) -> None:
        assert not self.errors, "\n".join(self.errors[:10])

    def _take_golden_irqs(self, slot: int) -> None:
        golden = self.golden[slot]
        self.expected_irqs += [(slot, i.vector, i.addr, i.data) for i in golden.interrupts]
        golden.interrupts.clear()

    def _on_irq(self, beat: dict) -> None:
        self.irqs.append((beat["slot"], beat["vector"], beat["addr"], beat["data"]))

    def _on_resp(self, beat: dict) -> None:
        if not self.in_flight:
            self.errors.append(f"response without a request: {beat}")
            return
        req = self.in_flight.popleft()
        self.responses += 1
        exp_data, exp_error = self.golden[req["slot"]].request(Op(req["op"]), req["addr"],
                                                                req["data"])
        self._take_golden_irqs(req["slot"])
        expected = {"slot": req["slot"], "tag": req["tag"], "data": exp_data,
                    "error": int(exp_error)}
        if beat != expected:
            self.errors.append(f"request {req}: response {beat} != {expected}")
        # Interrupts of a request are sent before its response becomes valid.
        if self.irqs != self.expected_irqs:
            self.errors.append(f"request {req}: irqs {self.irqs[-3:]} != "
                               f"{self.expected_irqs[-3:]}")
            self.irqs = list(self.expected_irqs)  # report each divergence once
        if self.check_each_response:
            cocotb.start_soon(self._check_next_cycle(f"after {req}"))

    async def _check_next_cycle(self, what: str) -> None:
        # The response is taken at the coming edge, at least a cycle after its write; the
        # write is in the digest SERVICE_DIGEST_LATENCY cycles after it, before the next
        # request's write is.
        for _ in range(SERVICE_DIGEST_LATENCY - 1):
            await RisingEdge(self.dut.clk)
        await ReadOnly()
        self.check_state(what)

    async def quiet(self) -> None:
        """Wait until every request is answered, the unit is idle and its last write
        (a state-port write too) is in the digest."""
        full = (1 << self.n_slots) - 1
        while self.in_flight or int(self.dut.idle.value) != full:
            await RisingEdge(self.dut.clk)
            await ReadOnly()
        await ClockCycles(self.dut.clk, DIGEST_LATENCY)

    # -------------------------------------------------------------- stimulus
    def random_request(self, addr_limit: int | None = None) -> dict:
        slot, op, addr, data = random_request(self.rng, self.layout, self.n_slots, addr_limit)
        self.tag = (self.tag + 1) % (1 << self.cfg.tag_bits)
        return {"slot": slot, "op": int(op), "addr": addr, "data": data, "tag": self.tag}

    async def traffic(self, count: int, addr_limit: int | None = None) -> None:
        for _ in range(count):
            req = self.random_request(addr_limit)
            self.in_flight.append(req)   # responses come in order, never before the accept
            await self.req.send(req)

    async def set_hold(self, mask: int) -> None:
        """Change irq_hold at a quiet point; check the replay of released slots."""
        self.dut.irq_hold.value = mask
        for slot, golden in enumerate(self.golden):
            hold = bool(mask >> slot & 1)
            if hold != golden.irq_hold:
                golden.set_irq_hold(hold)
                self._take_golden_irqs(slot)
        await RisingEdge(self.dut.clk)
        await self.quiet()
        await ReadOnly()
        if self.irqs != self.expected_irqs:
            self.errors.append(f"irq_hold={mask:#b}: irqs {self.irqs} != {self.expected_irqs}")
            self.irqs = list(self.expected_irqs)
        self.check_state(f"irq_hold={mask:#b}")
        await RisingEdge(self.dut.clk)

    async def read_dirty(self, slot: int) -> set[int]:
        dut, blocks = self.dut, set()
        for word in range(self.layout.dirty_words):
            dut.dirty_rd_en.value = 1
            dut.dirty_rd_slot.value = slot
            dut.dirty_rd_word.value = word
            await RisingEdge(dut.clk)
            dut.dirty_rd_en.value = 0
            await ReadOnly()
            bits = int(dut.dirty_rd_bits.value)
            blocks |= {32 * word + b for b in range(32) if bits >> b & 1}
            await RisingEdge(dut.clk)
        return blocks

    async def check_dirty(self, slot: int) -> None:
        got = await self.read_dirty(slot)
        expected = self.golden[slot].read_and_clear_dirty()
        if got != expected:
            self.errors.append(f"slot {slot} dirty blocks {sorted(got)} != {sorted(expected)}")
        await ReadOnly()
        self.check_state(f"dirty read slot {slot}")
        await RisingEdge(self.dut.clk)

    async def dirty_clear(self, slot: int) -> None:
        self.dut.dirty_clear.value = 1 << slot
        await ClockCycles(self.dut.clk, 2)
        self.dut.dirty_clear.value = 0
        self.golden[slot].dirty.clear()
        await ReadOnly()
        self.check_state(f"dirty_clear slot {slot}")
        await RisingEdge(self.dut.clk)

    async def check_quiesce(self, slot: int) -> None:
        """A request for a quiesced slot waits at the head; releasing lets it through."""
        dut = self.dut
        dut.quiesce.value = 1 << slot
        req = self.random_request()
        req["slot"] = slot
        self.in_flight.append(req)
        send = cocotb.start_soon(self.req.send(req))
        for _ in range(self.rng.randint(5, 20)):
            await RisingEdge(dut.clk)
            await ReadOnly()
            if dut.req__valid.value and dut.req__ready.value:
                self.errors.append(f"request accepted for quiesced slot {slot}")
            if not int(dut.idle.value) >> slot & 1:
                self.errors.append(f"quiesced slot {slot} not idle")
        await RisingEdge(dut.clk)
        dut.quiesce.value = 0
        await send
        await self.quiet()

    def flat(self, slot: int, addr: int) -> int:
        return slot << self.layout.addr_bits | addr

    async def read_image(self, slot: int) -> list[int]:
        """All image words of a slot through the state port, one per cycle."""
        dut, words, n = self.dut, [], self.layout.image_words
        dut.sa_rd_en.value = 1
        dut.sa_rd_addr.value = self.flat(slot, 0)
        for addr in range(1, n + 1):
            await RisingEdge(dut.clk)
            if addr < n:
                dut.sa_rd_addr.value = self.flat(slot, addr)
            else:
                dut.sa_rd_en.value = 0
            await ReadOnly()
            words.append(int(dut.sa_rd_data.value))
        await RisingEdge(dut.clk)
        return words


@cocotb.test()
@cocotb.parametrize(
    (("idle", "resp_backpressure", "irq_backpressure"), [(0.0, 0.0, 0.0), (0.3, 0.4, 0.5)]))
async def random_traffic_against_golden(dut, idle, resp_backpressure, irq_backpressure):
    """Random requests with idle/backpressure; between bursts irq_hold toggles and
    releases, dirty read-and-clear, dirty_clear and quiesce checks."""
    tb = TB(dut, idle, resp_backpressure, irq_backpressure)
    await tb.reset()
    hold = 0
    for _ in range(50):
        await tb.traffic(tb.rng.randint(5, 40))
        await tb.quiet()
        tb.assert_clean()
        action = tb.rng.random()
        slot = tb.rng.randrange(tb.n_slots)
        if action < 0.35:
            hold ^= 1 << slot
            await tb.set_hold(hold)
        elif action < 0.65:
            await tb.check_dirty(slot)
        elif action < 0.75:
            await tb.dirty_clear(slot)
        else:
            await tb.check_quiesce(slot)
    await tb.set_hold(0)
    for slot in range(tb.n_slots):
        await tb.check_dirty(slot)
        if await tb.read_image(slot) != tb.golden[slot].image:
            tb.errors.append(f"slot {slot}: state-port image differs from golden")
    tb.assert_clean()
    dut._log.info("%d responses, %d interrupts", tb.responses, len(tb.irqs))
    assert tb.responses > 700 and len(tb.irqs) > 40


@cocotb.test()
async def state_port_beside_traffic(dut):
    """The DMA's state port writes back-to-back bursts (repeated addresses included) into
    the upper memory of every slot while requests hit the words below: the digest accounts
    both, state-port writes leave no dirty bits, and everything reads back."""
    tb = TB(dut, idle=0.2, resp_backpressure=0.2, irq_backpressure=0.2)
    await tb.reset()
    lay = tb.layout
    split = lay.mem_base + 8
    tb.check_each_response = False   # the state port moves the digest behind the golden's back
    traffic = cocotb.start_soon(tb.traffic(500, addr_limit=split))
    dut_writes = 0
    while not traffic.done():
        await RisingEdge(dut.clk)
        burst = tb.rng.randint(1, 24)
        addr = tb.rng.randrange(split, lay.image_words)
        for _ in range(burst):
            slot = tb.rng.randrange(tb.n_slots)
            if tb.rng.random() < 0.7:
                addr = tb.rng.randrange(split, lay.image_words)
            value = tb.rng.getrandbits(32)
            dut.sa_wr_en.value = 1
            dut.sa_wr_addr.value = tb.flat(slot, addr)
            dut.sa_wr_data.value = value
            tb.golden[slot].image[addr] = value
            dut_writes += 1
            await RisingEdge(dut.clk)
        dut.sa_wr_en.value = 0
        # read a few of the state-port words back while traffic continues
        for _ in range(tb.rng.randint(0, 4)):
            slot, addr = tb.rng.randrange(tb.n_slots), tb.rng.randrange(split, lay.image_words)
            dut.sa_rd_en.value = 1
            dut.sa_rd_addr.value = tb.flat(slot, addr)
            await RisingEdge(dut.clk)
            dut.sa_rd_en.value = 0
            await ReadOnly()
            if int(dut.sa_rd_data.value) != tb.golden[slot].image[addr]:
                tb.errors.append(f"state-port read slot {slot} addr {addr}")
            await RisingEdge(dut.clk)
        await ClockCycles(dut.clk, tb.rng.randint(0, 5))
    await tb.quiet()
    await ReadOnly()
    tb.check_state("after state-port writes")
    await RisingEdge(dut.clk)
    for slot in range(tb.n_slots):
        await tb.check_dirty(slot)
        if await tb.read_image(slot) != tb.golden[slot].image:
            tb.errors.append(f"slot {slot}: state-port image differs from golden")
    tb.assert_clean()
    dut._log.info("%d state-port writes beside %d responses", dut_writes, tb.responses)
    assert dut_writes > 500


# ---------------------------------------------------------------- pytest entry
# pytest entry of the VF unit's cocotb bench (tb/vf_unit): every configuration on every
# installed simulator. ``VFMIG_SEED`` picks the seed (logged by every cocotb test).

@bench_matrix(CONFIGS)
def test_vf_unit(sim: str, config: str) -> None:
    CONFIGS[config].run_bench(sim, f"vf_unit_{config}", __name__, seed=bench_seed(20240611))
