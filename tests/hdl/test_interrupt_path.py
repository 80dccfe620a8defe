"""The system's interrupt path (hdl/system/interrupts.py) in amaranth.sim: which VF a
message is judged for while its VF moves."""

from __future__ import annotations

from amaranth.sim import Simulator

from hdl.formats import irq_layout
from hdl.system.interrupts import InterruptPath
from model.config import Device, SystemConfig
from model.irq_remap import RemapEntry, RemapOp, ValidationMode, msi_address
from model.regmap import irte_cmd

CONFIG = SystemConfig(n_vfs=2, host_slots=2, offload_slots=1)
PARAMS = CONFIG.irq_remap


def _dut() -> InterruptPath:
    return InterruptPath(CONFIG, {dev: irq_layout(CONFIG.layout, CONFIG.slots(dev))
                                  for dev in Device})


async def _write_entry(ctx, dut, vf: int, vector: int) -> None:
    entry = RemapEntry(True, False, ValidationMode.EXACT, int(Device.HOST), vf, vf,
                       0x10 * vf + vector)
    for strobe, word in ((dut.w_irte_data, entry.pack(PARAMS)),
                         (dut.w_irte_cmd, irte_cmd(RemapOp.WRITE, vf, vector))):
        ctx.set(dut.wdata, word)
        ctx.set(strobe, 1)
        await ctx.tick()
        ctx.set(strobe, 0)
    await ctx.tick().repeat(4)


def _offer(ctx, irq, slot: int, vf: int) -> None:
    ctx.set(irq.payload.slot, slot)
    ctx.set(irq.payload.addr, msi_address(PARAMS.handle(vf, 0)))
    ctx.set(irq.valid, 1)


def test_a_message_waiting_when_its_slot_is_freed_is_still_its_vfs():
    """VF 1 stops interrupting at host slot 1 while its last message waits at the gate (the
    VMs take nothing, the delivery buffer is full); then it starts at offload slot 0 and its
    host slot is freed. The waiting message is still VF 1's (its entries expect host slot
    1): it enters, the entries are retargeted, the VF released. A gate that asked the slot
    table (a freed slot reads VF 0) held it for ever and VF 1 was never retargeted."""
    dut = _dut()
    raisers, commands = [], []

    async def bench(ctx):
        for vf in (0, 1):
            await _write_entry(ctx, dut, vf, 0)
        ctx.set(dut.irq_live, 0b11)
        ctx.set(dut.irq_slot[1], 1)
        _offer(ctx, dut.host_irq, 0, 0)             # VF 0 fills the delivery buffer
        await ctx.tick().repeat(8)
        ctx.set(dut.host_irq.valid, 0)
        await ctx.tick()
        _offer(ctx, dut.host_irq, 1, 1)             # VF 1's last message: it waits
        await ctx.tick().repeat(4)
        assert not ctx.get(dut.host_irq.ready), "the message should wait (buffer full)"
        ctx.set(dut.irq_live, 0b01)                 # VF 1 stops: HOLD
        await ctx.tick().repeat(4)
        ctx.set(dut.irq_live, 0b11)                 # and starts at offload slot 0
        ctx.set(dut.irq_device, 0b10)
        ctx.set(dut.irq_slot[1], 0)
        ctx.set(dut.irq.ready, 1)                   # the VMs take interrupts again
        for _ in range(60):
            _, _, accepted = await ctx.tick().sample(dut.host_irq.ready)
            if accepted:
                ctx.set(dut.host_irq.valid, 0)

    async def trace(ctx):
        async for _, _, raised, raiser, command, op, vf in ctx.tick().sample(
                dut.irq_trace.raised, dut.irq_trace.raiser, dut.irq_trace.command,
                dut.irq_trace.ctl.op, dut.irq_trace.ctl.vf):
            if raised:
                raisers.append(raiser)
            if command:
                commands.append((RemapOp(op), vf))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.add_testbench(trace, background=True)
    sim.run()
    assert raisers[-1:] == [1] and set(raisers[:-1]) == {0}, raisers
    after_setup = commands[commands.index((RemapOp.RELEASE, 1)) + 1:]   # the reset's HOLDs
    moves = [c for c in after_setup if c[1] == 1]
    assert moves == [(RemapOp.HOLD, 1), (RemapOp.RETARGET, 1), (RemapOp.RELEASE, 1)], moves
