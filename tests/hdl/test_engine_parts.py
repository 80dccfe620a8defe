# amaranth: UnusedElaboratable=no
"""hdl/mig_engine/vf_table.py and hdl/system/regfile.py in amaranth.sim, alone.

Expectations come from the reset placement the system documents (VF i in host slot i,
RUNNING) and from ``model.regmap``'s addresses, not from the blocks.
"""

from __future__ import annotations

import pytest

from hdl.mig_engine.vf_table import VfTable
from hdl.system.regfile import RegisterFile
from model.config import SystemConfig
from model.regmap import GLOBAL, ID_VALUE, vf_reg
from model.vfio import DeviceState
from tests.hdl.simutil import run_sim

S = DeviceState


def test_table_reset_and_target_write_wins():
    dut = VfTable(n_vfs=3, n_slots=2, starts_here=False)

    async def bench(ctx):
        assert ctx.get(dut.present) == 0 and ctx.get(dut.have_free)
        assert ctx.get(dut.free_slot) == 0 and ctx.get(dut.quiesce) == 0b11
        # Both roles write VF 1's state in one cycle: the target's value is kept.
        ctx.set(dut.src_wr, {"vf": 1, "state_we": 1, "state": S.STOP_COPY})
        ctx.set(dut.tgt_wr, {"vf": 1, "state_we": 1, "state": S.RESUMING, "present_we": 1,
                             "present": 1, "slot_we": 1, "slot": 0})
        await ctx.tick()
        ctx.set(dut.src_wr, {})
        ctx.set(dut.tgt_wr, {})
        assert S(ctx.get(dut.state[1])) == S.RESUMING
        assert ctx.get(dut.present) == 0b010 and ctx.get(dut.free_slot) == 1
        assert ctx.get(dut.slot_vf[0]) == 1
        # RESUMING neither serves nor interrupts: slot 0 stays quiesced, irq-held.
        assert ctx.get(dut.quiesce) == 0b11 and ctx.get(dut.irq_hold) == 0b11

    run_sim(dut, bench)


def test_table_host_serves_and_drain_holds():
    dut = VfTable(n_vfs=2, n_slots=2, starts_here=True)

    async def bench(ctx):
        assert ctx.get(dut.here) == 0b11 and not ctx.get(dut.have_free)
        assert ctx.get(dut.quiesce) == 0 and ctx.get(dut.irq_live) == 0b11
        ctx.set(dut.draining, 1)
        ctx.set(dut.draining_vf, 1)
        assert ctx.get(dut.hold) == 0b10 and ctx.get(dut.quiesce) == 0b10

    run_sim(dut, bench)


def test_table_bad_parameter():
    with pytest.raises(ValueError, match=r"^VfTable n_slots must be at least 1, "
                                         r"not 0$"):
        VfTable(2, 0, True)


def test_regfile_decodes_the_map():
    cfg = SystemConfig(n_vfs=2)
    dut = RegisterFile(cfg)

    async def bench(ctx):
        bus = dut.bus

        async def read(addr):
            ctx.set(bus.addr, addr)
            ctx.set(bus.re, 1)
            await ctx.tick()
            ctx.set(bus.re, 0)
            return ctx.get(bus.rdata)

        assert await read(GLOBAL["ID"]) == ID_VALUE
        ctx.set(dut.vf_downtime, 1234)
        assert await read(vf_reg(1, "DOWNTIME")) == 1234
        assert ctx.get(dut.vf) == 1 and ctx.get(dut.is_vf)
        ctx.set(dut.g_irq_raised, 77)
        assert await read(GLOBAL["IRQ_RAISED"]) == 77
        ctx.set(bus.addr, vf_reg(0, "CONTROL"))
        ctx.set(bus.we, 1)
        assert ctx.get(dut.vf_w_control) and not ctx.get(dut.vf_w_requested_state)
        ctx.set(bus.addr, vf_reg(2, "CONTROL"))   # no VF 2: not a VF register
        assert not ctx.get(dut.vf_w_control) and not ctx.get(bus.mapped)

    run_sim(dut, bench)


def test_regfile_bad_parameter():
    with pytest.raises(TypeError, match=r"^RegisterFile config must be a SystemConfig, "
                                        r"not 3$"):
        RegisterFile(3)
