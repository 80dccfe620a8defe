"""cocotb + pyuvm bench of the AXI4-Lite slave (hdl/csr.py) alone, on its generated Verilog.

Behind the slave's register bus sits ``RegFileEmu``: a cocotb model of the register file of
model/regmap.py for ``N_VFS`` VFs (its own address decode drives ``bus__mapped`` as the
address changes; RO registers hold fixed values, RW registers store, WO registers record
the command and read as 0).  It logs every ``we``/``re`` strobe.  On the AXI side,
``tb.common.axil.AxilMaster`` (cocotbext-axi channel drivers) issues the accesses.

``TB.check`` is the scoreboard: every response code must be the one the AXI convention
gives for the address and strobe (computed here from the register map, not by the DUT),
an access in error must never reach the bus, and the bus log replayed in order must give
exactly the OKAY writes and, for every OKAY read, the value the register file returned.

Tests: ``directed_errors`` (unmapped, misaligned, bad strobes, with and without
backpressure), ``random_traffic`` (three concurrent masters, parametrized idle/stall), and
``RegModelTest`` (pyuvm: the register model of tb/common/regmodel.py through the agent's
sequencer and ``AxilRegAdapter``; reads of every register, mirror checks of the constant
registers, RW/WO writes, and a deliberately stale mirror that the check must catch).
Configuration: ``{"n_vfs": ...}`` in ``VFMIG_BENCH_CONFIG`` (tb/common/runner.py). Seeds: each
test's seed (logged; tb/common/seeds.py) derives every generator's.
"""

from __future__ import annotations

import random

import cocotb
import pytest
import pyuvm
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge
from pyuvm import ConfigDB, uvm_check_e, uvm_env, uvm_status_e, uvm_test

from hdl.csr import AxiLiteSlave
from model.config import SystemConfig
from model.regmap import GLOBAL_REGS, ID_VALUE, VF_BASE, VF_REGS, VF_STRIDE, vf_reg
from tb.common.axil import CONFIG_KEY, FULL_STROBE, AxilAgent, AxilItem, AxilMaster, AxilResp
from tb.common.regmodel import AxilRegAdapter, CsrRegModel, RegErrorLog, caps_value
from tb.common.runner import bench_config_env, bench_matrix, read_bench_config, run_tests
from tb.common.seeds import bench_seed, cocotb_test_seed, generator_seeds
from tb.common.uvm import ItemListSeq

# The bench's configuration, from the pytest entry (the default when run alone).
BENCH_CONFIG = read_bench_config("tb/csr/test_csr.py", {"n_vfs": 3})
N_VFS = BENCH_CONFIG["n_vfs"]
CONFIG = SystemConfig(n_vfs=N_VFS)
CLOCK_NS = 10


# ---------------------------------------------------------------- the register file
class RegFileEmu:
    """The register file of model/regmap.py behind the simple bus (read data the cycle
    after ``re``, held until the next ``re``)."""

    def __init__(self, dut, clock, n_vfs: int, config: SystemConfig, rng: random.Random):
        self.dut, self.clock = dut, clock
        self.regs = {r.offset: r for r in GLOBAL_REGS}
        self.regs.update({vf_reg(vf, r.name): r for vf in range(n_vfs) for r in VF_REGS})
        fixed = {"ID": ID_VALUE, "CAPS": caps_value(config),
                 "IMAGE_WORDS": config.layout.image_words}
        self.values = {addr: fixed.get(r.name, rng.getrandbits(32) if r.access == "RO" else 0)
                       for addr, r in self.regs.items()}
        self.log: list[tuple[str, int, int]] = []     # ("w"|"r", addr, data written|returned)
        self.commands: list[tuple[int, int]] = []     # writes to WO registers
        self.stray: list[str] = []                    # strobes that must never happen

    def read_value(self, addr: int) -> int:
        return 0 if self.regs[addr].access == "WO" else self.values[addr]

    def start(self) -> None:
        cocotb.start_soon(self._decode())
        cocotb.start_soon(self._serve())

    async def _decode(self) -> None:
        addr = self.dut.bus__addr
        while True:
            try:
                self.dut.bus__mapped.value = int(int(addr.value) in self.regs)
            except ValueError:     # X before the first access (Icarus)
                self.dut.bus__mapped.value = 0
            await addr.value_change

    async def _serve(self) -> None:
        dut = self.dut
        dut.bus__rdata.value = 0
        while True:
            await ReadOnly()
            we, re = int(dut.bus__we.value), int(dut.bus__re.value)
            addr = int(dut.bus__addr.value) if we or re else 0
            wdata = int(dut.bus__wdata.value) if we else 0
            await RisingEdge(self.clock)
            if we and re:
                self.stray.append(f"we and re together at {addr:#x}")
            if (we or re) and addr not in self.regs:
                self.stray.append(f"{'we' if we else 're'} at unmapped {addr:#x}")
                continue
            if we:
                self.log.append(("w", addr, wdata))
                access = self.regs[addr].access
                if access == "RW":
                    self.values[addr] = wdata
                elif access == "WO":
                    self.commands.append((addr, wdata))
            if re:
                value = self.read_value(addr)
                self.log.append(("r", addr, value))
                dut.bus__rdata.value = value


# ---------------------------------------------------------------- the bench
class TB:
    def __init__(self, dut, valid_idle: float = 0.0, ready_stall: float = 0.0):
        self.dut, self.seed = dut, cocotb_test_seed()
        seeds = generator_seeds(dut._log, 3, f"n_vfs {N_VFS}, valid_idle {valid_idle:.2f}, "
                                             f"ready_stall {ready_stall:.2f}")
        self.rng = random.Random(seeds[0])
        cocotb.start_soon(Clock(dut.clk, CLOCK_NS, unit="ns").start())
        dut.rst.value = 1
        self.done = []      # every completed access, in completion order
        self.master = AxilMaster(dut, "axil", dut.clk, dut.rst,
                                 rng=random.Random(seeds[1]),
                                 valid_idle=valid_idle, ready_stall=ready_stall,
                                 callback=self.done.append)
        self.regfile = RegFileEmu(dut, dut.clk, N_VFS, CONFIG, random.Random(seeds[2]))

    async def reset(self) -> None:
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 3)
        self.dut.rst.value = 0
        self.regfile.start()
        await RisingEdge(self.dut.clk)

    def expected_resp(self, addr: int, strb: int | None = None) -> AxilResp:
        """DECERR: no register at the word; SLVERR: misaligned or not a full strobe."""
        if addr & ~3 not in self.regfile.regs:
            return AxilResp.DECERR
        if addr & 3 or (strb is not None and strb != FULL_STROBE):
            return AxilResp.SLVERR
        return AxilResp.OKAY

    def interesting_addresses(self) -> list[int]:
        regs = sorted(self.regfile.regs)
        beyond = VF_BASE + N_VFS * VF_STRIDE
        return regs + [0x014, 0x0FC, VF_BASE + 0x3C, VF_BASE + VF_STRIDE + 0x2C, beyond,
                       beyond + 4, (1 << len(self.dut.axil__awaddr)) - 4,
                       0x001, 0x102, VF_BASE + 0x07, beyond + 1]

    def check(self) -> dict[str, int]:
        """The scoreboard (see the module doc); returns counts for the log."""
        problems = list(self.regfile.stray)
        writes = [a for a in self.done if a.write]
        reads = [a for a in self.done if not a.write]
        for a in self.done:
            want = self.expected_resp(a.addr, a.strb if a.write else None)
            if a.resp != want:
                problems.append(f"{'write' if a.write else 'read'} {a.addr:#x} "
                                f"strb {a.strb:04b}: {a.resp.name}, expected {want.name}")
            if not a.write and a.resp != AxilResp.OKAY and a.data != 0:
                problems.append(f"failed read {a.addr:#x} returned data {a.data:#x}")
        bus_writes = [(addr, data) for kind, addr, data in self.regfile.log if kind == "w"]
        bus_reads = [(addr, data) for kind, addr, data in self.regfile.log if kind == "r"]
        okay_writes = [(a.addr, a.data) for a in writes if a.resp == AxilResp.OKAY]
        okay_reads = [(a.addr, a.data) for a in reads if a.resp == AxilResp.OKAY]
        if bus_writes != okay_writes:
            problems.append(f"bus writes {bus_writes[:6]}... differ from the OKAY writes "
                            f"{okay_writes[:6]}...")
        if bus_reads != okay_reads:
            pairs = enumerate(zip(bus_reads, okay_reads, strict=False))
            first = next((i for i, (x, y) in pairs if x != y),
                         min(len(bus_reads), len(okay_reads)))
            problems.append(f"read {first}: the register file returned "
                            f"{bus_reads[first:first + 1]}, the master got "
                            f"{okay_reads[first:first + 1]}")
        assert not problems, f"seed {self.seed}: " + "; ".join(problems[:8])
        counts = {"writes": len(writes), "reads": len(reads), "okay_writes": len(okay_writes),
                  "okay_reads": len(okay_reads)}
        self.dut._log.info("scoreboard clean: %s", counts)
        return counts


# ---------------------------------------------------------------- plain cocotb tests
@cocotb.parametrize(timing=[(0.0, 0.0), (0.4, 0.6)])
@cocotb.test()
async def directed_errors(dut, timing):
    """Unmapped, misaligned and bad-strobe accesses get their error and never reach the bus;
    the registers next to them keep their values."""
    tb = TB(dut, *timing)
    await tb.reset()
    m = tb.master
    rw = vf_reg(0, "REQUESTED_STATE")
    await m.write(rw, 0x5)
    for addr in tb.interesting_addresses():
        if addr not in tb.regfile.regs:
            await m.write(addr, 0xFFFF_FFFF)
            await m.read(addr)
    for strb in (0b0000, 0b0001, 0b0101, 0b0111, 0b1110, 0b1000):
        await m.write(rw, 0xBAD0_0000 | strb, strb)
        await m.write(rw | 2, 0xBAD1_0000 | strb, strb)
    assert await m.read(rw) == (0x5, AxilResp.OKAY)
    tb.check()
    assert tb.regfile.log == [("w", rw, 0x5), ("r", rw, 0x5)], tb.regfile.log


@cocotb.parametrize(timing=[(0.0, 0.0), (0.3, 0.5), (0.7, 0.2)])
@cocotb.test()
async def random_traffic(dut, timing):
    """Three masters issue random reads and writes at once (mapped, unmapped, misaligned,
    partial strobes) with random AW/W/AR idles and B/R stalls."""
    tb = TB(dut, *timing)
    await tb.reset()
    addrs = tb.interesting_addresses()
    mapped = sorted(tb.regfile.regs)
    unmapped = [a for a in addrs if a not in tb.regfile.regs]

    async def worker(rng: random.Random, n: int) -> None:
        # one read and one write that must fail first, so every seed checks both errors
        # (random choices alone left a seed with no failing read: 182 reads, all mapped)
        await tb.master.read(rng.choice(unmapped))
        await tb.master.write(rng.choice(unmapped), rng.getrandbits(32))
        for _ in range(n):
            addr = rng.choice(mapped) if rng.random() < 0.7 else rng.choice(addrs)
            if rng.random() < 0.5:
                strb = FULL_STROBE if rng.random() < 0.85 else rng.getrandbits(4)
                await tb.master.write(addr, rng.getrandbits(32), strb)
            else:
                await tb.master.read(addr)
            if rng.random() < 0.2:
                await ClockCycles(dut.clk, rng.randrange(1, 6))
    tasks = [cocotb.start_soon(worker(random.Random(tb.rng.getrandbits(32)), 120))
             for _ in range(3)]
    for task in tasks:
        await task
    counts = tb.check()
    assert counts["okay_writes"] > 50 and counts["okay_reads"] > 50, counts
    assert counts["writes"] > counts["okay_writes"] and counts["reads"] > counts["okay_reads"]


# ---------------------------------------------------------------- pyuvm: the register model
class AxilEnv(uvm_env):
    def build_phase(self):
        self.agent = AxilAgent("axil", self)

    def connect_phase(self):
        self.model: CsrRegModel = ConfigDB().get(self, "", "REG_MODEL")
        self.model.map.set_sequencer(self.agent.seqr, AxilRegAdapter())


@pyuvm.test()
class RegModelTest(uvm_test):
    """Register-model frontdoor accesses through the AXI4-Lite agent, with backpressure."""

    TIMING = (0.3, 0.4)

    def build_phase(self):
        self.tb = TB(cocotb.top, *self.TIMING)
        self.model = CsrRegModel(N_VFS, CONFIG)
        ConfigDB().set(None, "*", CONFIG_KEY, self.tb.master)
        ConfigDB().set(None, "*", "REG_MODEL", self.model)
        self.env = AxilEnv("env", self)

    async def run_phase(self):
        self.raise_objection()
        tb, model, rng = self.tb, self.model, self.tb.rng
        await tb.reset()
        with RegErrorLog() as errors:
            # every readable register reads what the register file holds
            for _, reg in model.all_registers():
                addr = reg.get_address()
                if reg.desc.access == "WO":
                    continue
                status, value = await reg.read()
                assert status == uvm_status_e.UVM_IS_OK, f"{reg.get_full_name()}: {status}"
                assert value == tb.regfile.read_value(addr), (
                    f"{reg.get_full_name()} at {addr:#x} read {value:#x}, the register file "
                    f"holds {tb.regfile.read_value(addr):#x}")
            # constants against their reset values (mirror check)
            for reg in (model.ID, model.CAPS, model.IMAGE_WORDS):
                assert await reg.mirror(uvm_check_e.UVM_CHECK) == uvm_status_e.UVM_IS_OK
            assert not errors.messages, errors.messages
            # RW and WO writes
            for block in model.vf:
                value = rng.getrandbits(3)
                await block.REQUESTED_STATE.write(value)
                assert block.REQUESTED_STATE.get_mirrored_value() == value
                assert tb.regfile.values[block.REQUESTED_STATE.get_address()] == value
                assert (await block.REQUESTED_STATE.read())[1] == value
                command = rng.getrandbits(2)
                assert await block.CONTROL.write(command) == uvm_status_e.UVM_IS_OK
                assert tb.regfile.commands[-1] == (block.CONTROL.get_address(), command)
            # the mirror check must catch a register that is not what the model says
            tb.regfile.values[model.ID.get_address()] = ID_VALUE ^ 0x100
            await model.ID.mirror(uvm_check_e.UVM_CHECK)
            assert len(errors.messages) == 1 and "ID" in errors.messages[0], errors.messages
            tb.regfile.values[model.ID.get_address()] = ID_VALUE
            # raw items through the same agent: errors come back as AXI responses
            beyond = VF_BASE + N_VFS * VF_STRIDE
            items = [AxilItem("unmapped", write=False, addr=beyond),
                     AxilItem("misaligned", write=True, addr=vf_reg(0, "REQUESTED_STATE") + 1,
                              data=7),
                     AxilItem("strobe", write=True, addr=vf_reg(0, "REQUESTED_STATE"), data=7,
                              strb=0b0011)]
            await ItemListSeq("direct", items).start(self.env.agent.seqr)
            assert [i.resp for i in items] == [AxilResp.DECERR, AxilResp.SLVERR,
                                               AxilResp.SLVERR], [str(i) for i in items]
            status, _ = await model.vf[0].REQUESTED_STATE.read()
            assert status == uvm_status_e.UVM_IS_OK
        tb.check()
        self.drop_objection()


# ---------------------------------------------------------------- pytest entry
# pytest entry: the cocotb/pyuvm bench of the AXI4-Lite slave (tb/csr) on Verilator and
# Icarus. ``VFMIG_SEED`` picks the seed (logged by every cocotb test).

SEED = bench_seed(20240705)


@bench_matrix()
def test_cocotb_csr(sim: str) -> None:
    pytest.importorskip("cocotbext.axi", reason="the AXI4-Lite agent needs cocotbext-axi "
                                                "(pip install cocotbext-axi==0.1.28)")
    run_tests(sim, "csr", AxiLiteSlave, __name__, parameters={"addr_bits": 15},
              extra_env=bench_config_env(BENCH_CONFIG), seed=SEED)
