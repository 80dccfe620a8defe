# amaranth: UnusedElaboratable=no
"""amaranth.sim tests of the AXI4-Lite slave (hdl/csr.py) and the register-map decoder.

The slave drives a small register file (``RegFile``, its own decode, independent of
``regmap_mapped``); a bus monitor records every ``we``/``re`` strobe, and the checks replay
that log against a Python dictionary, so a write that reaches the bus in error, a lost
write, or a read answered from the wrong access all fail.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import pytest
from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from hdl.csr import AxiLiteSlave, AxiResp, axil_signature, reg_bus_signature, regmap_mapped
from model.regmap import ADDR_BITS, GLOBAL, VF, VF_BASE, VF_STRIDE, vf_reg
from tests.hdl.simutil import run_sim

# The register file of these tests: a few words anywhere in the address space.
MAPPED = (0x000, 0x004, 0x010, 0x100, 0x104, 0x140, 0x7FFC)
UNMAPPED = (0x008, 0x0FC, 0x108, 0x4000)


def initial(addr: int) -> int:
    return 0xA500_0000 | addr


def expected_resp(addr: int, strb: int | None = None) -> int:
    """AXI convention, independent of the HDL: DECERR before SLVERR before OKAY."""
    if addr & ~3 not in MAPPED:
        return AxiResp.DECERR
    if addr & 3 or (strb is not None and strb != 0b1111):
        return AxiResp.SLVERR
    return AxiResp.OKAY


class RegFile(wiring.Component):
    """Registers at ``MAPPED`` behind the simple bus: write on ``we``, read data the cycle
    after ``re`` (held until the next ``re``), ``mapped`` decoded from ``addr``."""

    def __init__(self):
        super().__init__({"bus": In(reg_bus_signature())})

    def elaborate(self, platform):
        m = Module()
        bus = self.bus
        with m.Switch(bus.addr):
            for addr in MAPPED:
                reg = Signal(32, name=f"reg_{addr:04x}", init=initial(addr))
                with m.Case(addr):
                    m.d.comb += bus.mapped.eq(1)
                    with m.If(bus.we):
                        m.d.sync += reg.eq(bus.wdata)
                    with m.If(bus.re):
                        m.d.sync += bus.rdata.eq(reg)
            with m.Default():
                with m.If(bus.re):   # must never happen: an unmapped read stays off the bus
                    m.d.sync += bus.rdata.eq(0xDEAD_BEEF)
        return m


# ---------------------------------------------------------------- a tiny AXI4-Lite master
async def _offer(ctx, valid, ready, fields: tuple, delay: int = 0) -> None:
    if delay:
        await ctx.tick().repeat(delay)
    for sig, value in fields:
        ctx.set(sig, value)
    ctx.set(valid, 1)
    await ctx.tick().until(ready)
    ctx.set(valid, 0)


async def _take(ctx, valid, ready, fields: tuple, stall: int = 0) -> tuple:
    """Wait for ``valid``; keep ``ready`` low ``stall`` more cycles (the response must hold
    still meanwhile), then take it."""
    first = await ctx.tick().sample(*fields).until(valid)   # ready is low: no handshake
    for _ in range(stall):
        _, _, still_valid, *now = await ctx.tick().sample(valid, *fields)
        assert still_valid and tuple(now) == first, \
            "a response changed or vanished before its handshake"
    ctx.set(ready, 1)
    _, _, *taken = await ctx.tick().sample(*fields)
    ctx.set(ready, 0)
    return tuple(taken)


async def axi_write(ctx, axil, addr, data, strb=0b1111, aw_delay=0, w_delay=0, stall=0):
    """AW and W run concurrently (their delays set the order); returns BRESP."""
    # One testbench steps both channels, cycle by cycle.
    steps = {"aw": aw_delay, "w": w_delay}
    pending = {"aw", "w"}
    while pending:
        for ch in ("aw", "w"):
            if ch in pending and steps[ch] == 0:
                if ch == "aw":
                    ctx.set(axil.awvalid, 1)
                    ctx.set(axil.awaddr, addr)
                else:
                    ctx.set(axil.wvalid, 1)
                    ctx.set(axil.wdata, data)
                    ctx.set(axil.wstrb, strb)
        _, _, awready, wready, awvalid, wvalid = await ctx.tick().sample(
            axil.awready, axil.wready, axil.awvalid, axil.wvalid)
        if awvalid and awready:
            pending.discard("aw")
            ctx.set(axil.awvalid, 0)
        if wvalid and wready:
            pending.discard("w")
            ctx.set(axil.wvalid, 0)
        for ch in steps:
            steps[ch] = max(0, steps[ch] - 1)
    (resp,) = await _take(ctx, axil.bvalid, axil.bready, (axil.bresp,), stall)
    return resp


async def axi_read(ctx, axil, addr, delay=0, stall=0) -> tuple[int, int]:
    await _offer(ctx, axil.arvalid, axil.arready, ((axil.araddr, addr),), delay)
    resp, data = await _take(ctx, axil.rvalid, axil.rready, (axil.rresp, axil.rdata), stall)
    return data, resp


@dataclass
class BusLog:
    """Every strobe on the register bus, in order: (kind, addr, wdata) per access."""
    accesses: list = field(default_factory=list)

    def process(self, bus):
        async def monitor(ctx):
            async for _, _, we, re, addr, wdata in ctx.tick().sample(
                    bus.we, bus.re, bus.addr, bus.wdata):
                assert not (we and re), "a write and a read strobe in the same cycle"
                if we:
                    self.accesses.append(("w", addr, wdata))
                if re:
                    self.accesses.append(("r", addr, None))
        return monitor


def simulate(*bodies) -> BusLog:
    """Run every ``body(ctx, axil, log)`` (one testbench each, concurrently) against a fresh
    slave + register file."""
    top = Module()
    dut, regs = AxiLiteSlave(), RegFile()
    top.submodules.dut, top.submodules.regs = dut, regs
    wiring.connect(top, dut.bus, regs.bus)
    log = BusLog()

    def testbench(body):
        async def bench(ctx):
            await body(ctx, dut.axil, log)
        return bench
    run_sim(top, *map(testbench, bodies), processes=[log.process(dut.bus)])
    return log


# ---------------------------------------------------------------- constructor checks
def test_addr_bits_is_checked():
    with pytest.raises(TypeError, match=r"^addr_bits must be an int, not '15'$"):
        AxiLiteSlave("15")
    with pytest.raises(ValueError, match=r"^addr_bits must be between 3 and 32, not 2$"):
        AxiLiteSlave(2)
    with pytest.raises(ValueError, match=r"^addr_bits must be between 3 and 32, not 33$"):
        axil_signature(33)


def test_ports_flatten_to_axi_names():
    dut = AxiLiteSlave(12)
    names = {".".join(map(str, path)) for path, _, _ in dut.signature.flatten(dut)}
    for ch in ("aw", "ar"):
        assert {f"axil.{ch}valid", f"axil.{ch}ready", f"axil.{ch}addr", f"axil.{ch}prot"} <= names
    assert {"axil.wdata", "axil.wstrb", "axil.bresp", "axil.rdata", "axil.rresp",
            "bus.addr", "bus.we", "bus.re", "bus.rdata", "bus.mapped"} <= names
    assert len(dut.axil.awaddr) == 12 and len(dut.bus.addr) == 12


# ---------------------------------------------------------------- write channel ordering
@pytest.mark.parametrize("aw_delay,w_delay", [(0, 0), (0, 3), (3, 0), (1, 2)],
                         ids=["same_cycle", "aw_first", "w_first", "aw_then_w"])
def test_write_in_any_channel_order(aw_delay, w_delay):
    async def body(ctx, axil, log):
        resp = await axi_write(ctx, axil, 0x104, 0x1234_5678, aw_delay=aw_delay,
                               w_delay=w_delay)
        assert resp == AxiResp.OKAY
        assert await axi_read(ctx, axil, 0x104) == (0x1234_5678, AxiResp.OKAY)
        assert await axi_read(ctx, axil, 0x100) == (initial(0x100), AxiResp.OKAY)
    log = simulate(body)
    assert log.accesses == [("w", 0x104, 0x1234_5678), ("r", 0x104, None), ("r", 0x100, None)]


def test_latency_is_as_documented():
    async def body(ctx, axil, log):
        ctx.set(axil.awvalid, 1)
        ctx.set(axil.awaddr, 0x10)
        ctx.set(axil.wvalid, 1)
        ctx.set(axil.wdata, 7)
        ctx.set(axil.wstrb, 0b1111)
        await ctx.tick()                      # both handshakes, in cycle 0
        ctx.set(axil.awvalid, 0)
        ctx.set(axil.wvalid, 0)
        cycles = 1                            # now in cycle 1
        while not ctx.get(axil.bvalid):
            await ctx.tick()
            cycles += 1
        assert cycles == 2
        ctx.set(axil.bready, 1)
        await ctx.tick()
        ctx.set(axil.bready, 0)
        ctx.set(axil.arvalid, 1)
        ctx.set(axil.araddr, 0x10)
        await ctx.tick()                      # AR handshake, in cycle 0
        ctx.set(axil.arvalid, 0)
        cycles = 1
        while not ctx.get(axil.rvalid):
            await ctx.tick()
            cycles += 1
        assert cycles == 3
        assert ctx.get(axil.rdata) == 7
    simulate(body)


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize("addr", UNMAPPED + (0x101, 0x102, 0x7FFF, 0x009))
def test_bad_address_gets_the_right_error_and_never_reaches_the_bus(addr):
    async def body(ctx, axil, log):
        assert await axi_write(ctx, axil, addr, 0xFFFF_FFFF) == expected_resp(addr)
        data, resp = await axi_read(ctx, axil, addr)
        assert (data, resp) == (0, expected_resp(addr))
        # the word the misaligned address falls in is untouched
        word = addr & ~3
        if word in MAPPED:
            assert await axi_read(ctx, axil, word) == (initial(word), AxiResp.OKAY)
    log = simulate(body)
    # only the check read of the word the address falls in reached the bus
    assert log.accesses == ([] if addr & ~3 not in MAPPED else [("r", addr & ~3, None)])


@pytest.mark.parametrize("strb", [0b0000, 0b0001, 0b0111, 0b1110, 0b1000])
def test_partial_strobe_is_slverr_and_writes_nothing(strb):
    async def body(ctx, axil, log):
        assert await axi_write(ctx, axil, 0x004, 0x0BAD_0BAD, strb=strb) == AxiResp.SLVERR
        assert await axi_read(ctx, axil, 0x004) == (initial(0x004), AxiResp.OKAY)
        assert await axi_write(ctx, axil, 0x4000, 0, strb=strb) == AxiResp.DECERR
    log = simulate(body)
    assert log.accesses == [("r", 0x004, None)]


# ---------------------------------------------------------------- backpressure
def test_b_backpressure_holds_the_response_and_the_next_write():
    async def body(ctx, axil, log):
        assert await axi_write(ctx, axil, 0x000, 1, stall=5) == AxiResp.OKAY
        assert await axi_write(ctx, axil, 0x4000, 2, stall=4) == AxiResp.DECERR
        assert await axi_write(ctx, axil, 0x000, 3, stall=3) == AxiResp.OKAY
        assert await axi_read(ctx, axil, 0x000) == (3, AxiResp.OKAY)
    log = simulate(body)
    assert log.accesses == [("w", 0x000, 1), ("w", 0x000, 3), ("r", 0x000, None)]


def test_second_write_waits_while_b_is_not_taken():
    """AW/W of a second write are accepted into the holding registers, but its ``we`` only
    comes after the first B handshake (one write outstanding)."""
    async def body(ctx, axil, log):
        for sig, v in ((axil.awvalid, 1), (axil.awaddr, 0x000), (axil.wvalid, 1),
                       (axil.wdata, 11), (axil.wstrb, 0b1111)):
            ctx.set(sig, v)
        await ctx.tick()                                   # first AW and W taken
        ctx.set(axil.awaddr, 0x004)
        ctx.set(axil.wdata, 22)
        while True:                                        # until the second pair is taken
            _, _, awready, wready = await ctx.tick().sample(axil.awready, axil.wready)
            if awready and wready:
                break
        ctx.set(axil.awvalid, 0)
        ctx.set(axil.wvalid, 0)
        await ctx.tick().repeat(6)
        assert len(log.accesses) == 1, "a second write reached the bus before B was taken"
        assert ctx.get(axil.bvalid) and ctx.get(axil.bresp) == AxiResp.OKAY
        ctx.set(axil.bready, 1)
        await ctx.tick()
        ctx.set(axil.bready, 0)
        (resp,) = await _take(ctx, axil.bvalid, axil.bready, (axil.bresp,))
        assert resp == AxiResp.OKAY
    log = simulate(body)
    assert log.accesses == [("w", 0x000, 11), ("w", 0x004, 22)]


def test_r_backpressure_holds_data_while_writes_go_on():
    async def body(ctx, axil, log):
        await _offer(ctx, axil.arvalid, axil.arready, ((axil.araddr, 0x140),))
        await ctx.tick().until(axil.rvalid)
        # the read response waits; a write to the same register goes through meanwhile
        assert await axi_write(ctx, axil, 0x140, 0x5555) == AxiResp.OKAY
        await ctx.tick().repeat(3)
        assert ctx.get(axil.rvalid) and ctx.get(axil.rdata) == initial(0x140)
        data, resp = await _take(ctx, axil.rvalid, axil.rready, (axil.rdata, axil.rresp), 2)
        assert (data, resp) == (initial(0x140), AxiResp.OKAY)
        assert await axi_read(ctx, axil, 0x140, stall=4) == (0x5555, AxiResp.OKAY)
    log = simulate(body)
    assert log.accesses == [("r", 0x140, None), ("w", 0x140, 0x5555), ("r", 0x140, None)]


def test_read_and_write_in_the_same_cycle_take_turns():
    """Both ready in one cycle: the direction that did not go last wins."""
    async def both(ctx, axil, value, read=True, write=True):
        for sig, v in ((axil.awvalid, write), (axil.awaddr, 0x010), (axil.wvalid, write),
                       (axil.wdata, value), (axil.wstrb, 0b1111), (axil.arvalid, read),
                       (axil.araddr, 0x010), (axil.bready, 1), (axil.rready, 1)):
            ctx.set(sig, v)
        await ctx.tick()
        for sig in (axil.awvalid, axil.wvalid, axil.arvalid):
            ctx.set(sig, 0)
        await ctx.tick().repeat(5)

    async def body(ctx, axil, log):
        await both(ctx, axil, 1)                 # nothing went yet: read, then write
        await both(ctx, axil, 2)                 # the write went last: read, then write
        await both(ctx, axil, 0, write=False)    # a lone read
        await both(ctx, axil, 3)                 # the read went last: write, then read
    log = simulate(body)
    assert [(k, d) for k, _, d in log.accesses] == [
        ("r", None), ("w", 1), ("r", None), ("w", 2), ("r", None), ("w", 3), ("r", None)]


# ---------------------------------------------------------------- random traffic
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_concurrent_traffic_matches_the_model(seed):
    """A writer and a reader run at once with random delays, stalls, addresses (mapped,
    unmapped, misaligned) and strobes.  The bus log replayed on a dictionary must give every
    OKAY read its data, and carry exactly the OKAY writes, in order."""
    rng = random.Random(seed)
    print(f"seed={seed}")
    addrs = MAPPED + UNMAPPED + (0x001, 0x106, 0x7FFD)
    writes = [(rng.choice(addrs), rng.getrandbits(32),
               0b1111 if rng.random() < 0.85 else rng.getrandbits(4),
               rng.randrange(3), rng.randrange(3), rng.choice((0, 0, 1, 4)))
              for _ in range(40)]
    reads = [(rng.choice(addrs), rng.randrange(3), rng.choice((0, 0, 2, 5)))
             for _ in range(40)]
    got_b, got_r = [], []

    async def writer(ctx, axil, log):
        for addr, data, strb, aw_delay, w_delay, stall in writes:
            got_b.append(await axi_write(ctx, axil, addr, data, strb, aw_delay, w_delay, stall))

    async def reader(ctx, axil, log):
        for addr, delay, stall in reads:
            got_r.append(await axi_read(ctx, axil, addr, delay, stall))
    log = simulate(writer, reader)

    assert got_b == [expected_resp(a, s) for a, _, s, *_ in writes]
    assert [resp for _, resp in got_r] == [expected_resp(a) for a, *_ in reads]
    okay_writes = [(a, d) for (a, d, *_), r in zip(writes, got_b, strict=True) if r == AxiResp.OKAY]
    okay_reads = [(a, data) for (a, *_), (data, r) in zip(reads, got_r, strict=True)
                  if r == AxiResp.OKAY]
    assert [(a, d) for k, a, d in log.accesses if k == "w"] == okay_writes
    assert [a for k, a, _ in log.accesses if k == "r"] == [a for a, _ in okay_reads]
    model = {a: initial(a) for a in MAPPED}
    reads_left = iter(okay_reads)
    for kind, addr, wdata in log.accesses:
        if kind == "w":
            model[addr] = wdata
        else:
            assert next(reads_left) == (addr, model[addr])
    assert all(data == 0 for data, r in got_r if r != AxiResp.OKAY)
    assert len(okay_writes) > 10 and len(okay_reads) > 10   # the mix reached the bus


# ---------------------------------------------------------------- the regmap decoder
def regmap_addresses(n_vfs: int) -> set[int]:
    return set(GLOBAL.values()) | {vf_reg(v, name) for v in range(n_vfs) for name in VF}


@pytest.mark.parametrize("n_vfs", [1, 3, 8])
def test_regmap_mapped_matches_the_register_map(n_vfs):
    addr = Signal(ADDR_BITS)
    m = Module()
    mapped = Signal()
    m.d.comb += mapped.eq(regmap_mapped(addr, n_vfs))
    m.d.sync += Signal().eq(0)   # a sync domain for run_sim's clock
    expected = regmap_addresses(n_vfs)
    end = VF_BASE + (n_vfs + 1) * VF_STRIDE
    rng = random.Random(n_vfs)
    probes = list(range(0, end)) + [rng.randrange(end, 1 << ADDR_BITS) for _ in range(200)]
    wrong = []

    async def bench(ctx):
        for a in probes:
            ctx.set(addr, a)
            if ctx.get(mapped) != (a in expected):
                wrong.append(a)
    run_sim(m, bench)
    assert not wrong, f"decoder wrong at {[hex(a) for a in wrong[:8]]}"


def test_regmap_mapped_checks_its_arguments():
    addr = Signal(ADDR_BITS)
    with pytest.raises(TypeError, match=r"^n_vfs must be an int, not 2\.0$"):
        regmap_mapped(addr, 2.0)
    with pytest.raises(ValueError, match=r"^n_vfs must be at least 1, not 0$"):
        regmap_mapped(addr, 0)
    with pytest.raises(ValueError, match=r"^4 VFs need registers up to 0x1ff, beyond the "
                                         r"8-bit address$"):
        regmap_mapped(Signal(8), 4)


# ---------------------------------------------------------------- the pyuvm register model
@pytest.mark.parametrize("n_vfs", [1, 5])
def test_register_model_addresses_and_rights_match_the_register_map(n_vfs):
    pytest.importorskip("cocotbext.axi", reason="tb/common/axil.py needs cocotbext-axi")
    from model.config import SystemConfig
    from model.regmap import GLOBAL_REGS, ID_VALUE, VF_REGS
    from tb.common.regmodel import CsrRegModel, caps_value

    config = SystemConfig(n_vfs=n_vfs)
    model = CsrRegModel(n_vfs, config, name=f"csr_test_{n_vfs}")
    expected = {GLOBAL[r.name]: (r.name, r.access) for r in GLOBAL_REGS}
    expected |= {vf_reg(v, r.name): (r.name, r.access) for v in range(n_vfs) for r in VF_REGS}
    got = {reg.get_address(): (reg.get_name(), reg.get_rights()) for _, reg in
           model.all_registers()}
    assert got == expected
    assert model.by_address(vf_reg(n_vfs - 1, "STATUS")) is model.vf[n_vfs - 1].STATUS
    assert model.ID.get_mirrored_value() == ID_VALUE
    assert model.CAPS.get_mirrored_value() == caps_value(config)
    status = model.vf[0].STATUS.fields
    assert (status["busy"].get_lsb_pos(), status["error"].get_n_bits()) == (8, 4)
