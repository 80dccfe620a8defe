"""hdl/irq_remap.py in amaranth.sim: parameter checks, the port contract, directed timing
and semantics cases, and random storms scored against model.irq_remap through the
cycle-level bench of tb/irq_remap (the scoreboard the cocotb/pyuvm bench uses too)."""

from __future__ import annotations

import random

import pytest
from amaranth.hdl import Const, Fragment, Value
from amaranth.sim import Simulator

from hdl.formats import bits_for
from hdl.irq_remap import (
    FAULT_INJECTIONS,
    IrqRemap,
    control_layout,
    delivery_layout,
    entry_layout,
    fault_layout,
    handle_from_msi_address,
    raise_layout,
)
from model.irq_remap import (
    FaultReason,
    RemapCommand,
    RemapEntry,
    RemapParams,
    ValidationMode,
    entry_fields,
    msi_address,
)
from tb.irq_remap import (
    BENCH_PARAMS,
    ODD_PARAMS,
    BenchKnobs,
    PortBench,
    build_remap,
    control_script,
    layouts,
    pack,
    unpack,
)
from tests.checks import assert_refused
from tests.hdl.simutil import scenario_test

P = BENCH_PARAMS
LAY = layouts(P)


# ---------------------------------------------------------------- parameters, ports
@pytest.mark.parametrize(("args", "kwargs", "error", "message"), [
    ((0, 4), {}, ValueError, "IrqRemap n_vfs must be between 1 and 255, not 0"),
    (("4", 4), {}, TypeError, "IrqRemap n_vfs must be an integer, not '4'"),
    ((4, 0), {}, ValueError, "IrqRemap n_vectors must be between 1 and 2048, not 0"),
    ((4, 4), {"vm_bits": 17}, ValueError, "IrqRemap vm_bits must be between 1 and 16, not 17"),
    ((4, 4), {"guest_vector_bits": 0}, ValueError,
     "IrqRemap guest_vector_bits must be between 1 and 16, not 0"),
    ((4, 4), {"fault_depth": 300}, ValueError,
     "IrqRemap fault_depth must be between 1 and 256, not 300"),
    ((255, 32), {}, ValueError,
     "IrqRemap table must have at most 4096 entries (n_vfs * vector_stride = 255 * 32), "
     "not 8160"),
    ((4, 4), {"_fault_inject": "late_replay"}, ValueError,
     "IrqRemap _fault_inject must be None or one of double_replay, forget_pba, "
     "not 'late_replay'"),
])
def test_parameters_are_checked(args, kwargs, error, message):
    assert_refused(error, message, IrqRemap, *args, **kwargs)


def test_layouts_follow_the_model():
    p = RemapParams(n_vfs=8, n_vectors=4)   # the default system: handle = vf * 4 + vector
    offset = 0
    for name, width in entry_fields(p).items():
        fld = entry_layout(p)[name]
        assert (fld.offset, fld.width) == (offset, width), name
        offset += width
    assert raise_layout(p)["handle"].width == 5 == bits_for(8) + bits_for(4)
    assert [name for name, _ in delivery_layout(p)] == ["vm", "guest_vector", "vf", "vector"]
    assert [name for name, _ in fault_layout(p)] == ["source_device", "source_slot", "vf",
                                                      "vector", "reason"]
    assert [name for name, _ in control_layout(p)] == ["op", "vf", "vector", "entry"]
    dut = IrqRemap(8, 4)
    Fragment.get(dut, None)
    ports = {"__".join(map(str, path)): len(Value.cast(value))
             for path, _, value in dut.signature.flatten(dut)}
    assert {"irq_in__valid", "irq_in__ready", "irq_in__payload", "irq_out__payload", "ctl__valid",
            "fault__payload", "rd_entry", "rd_pending", "held", "busy", "blocked_count",
            "ctl_errors"} <= set(ports)
    assert ports["held"] == 8 and ports["rd_entry"] == sum(entry_fields(p).values())


def test_entry_pack_is_bit_exact_with_the_hdl_layout():
    rng = random.Random(3)
    layout = entry_layout(P)
    for _ in range(50):
        e = RemapEntry(bool(rng.getrandbits(1)), bool(rng.getrandbits(1)),
                       ValidationMode(rng.getrandbits(1)), rng.getrandbits(1), rng.getrandbits(8),
                       rng.getrandbits(P.vm_bits), rng.getrandbits(P.guest_vector_bits))
        const = layout.const(e.to_dict())
        assert Const.cast(const).value == e.pack(P)


def test_handle_from_msi_address_matches_the_model():
    dut_addr = Const(0, 32)
    for handle in (0, 1, 9, 15, 0x1FF, 0x7FFF, 0x8000, 0xFFFF):
        value = handle_from_msi_address(Const(msi_address(handle), 32), 16)
        assert Const.cast(value).value == handle
        assert len(handle_from_msi_address(dut_addr, 5)) == 5


# ---------------------------------------------------------------- directed cases
def simulate(dut, bench) -> None:
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


def entry(vf: int, vector: int, *, mask: bool = False, src=None, present: bool = True):
    src = (0, vf) if src is None else src
    return RemapEntry(present, mask, ValidationMode.EXACT, src[0], src[1], vf, 0x10 * vf + vector)


class Directed:
    """Drives a fresh IrqRemap(P) cycle by cycle and records what comes out."""

    def __init__(self, ctx, dut):
        self.ctx, self.dut = ctx, dut
        self.cycle = 0
        self.out: list[tuple[int, dict]] = []
        self.faults: list[dict] = []
        self.in_ready: list[int] = []
        ctx.set(dut.irq_out.ready, 1)
        ctx.set(dut.fault.ready, 1)

    async def tick(self, irq=None, cmd=None, out_ready: int = 1) -> tuple[int, int]:
        """One cycle with these inputs; returns (irq_in.ready, ctl.ready) of the cycle."""
        ctx, dut = self.ctx, self.dut
        ctx.set(dut.irq_in.valid, irq is not None)
        if irq is not None:
            ctx.set(dut.irq_in.payload.as_value(), pack(LAY["irq_in"], irq))
        ctx.set(dut.ctl.valid, cmd is not None)
        if cmd is not None:
            ctx.set(dut.ctl.payload.as_value(), pack(LAY["ctl"], cmd.to_dict(P)))
        ctx.set(dut.irq_out.ready, out_ready)
        irq_ready, ctl_ready = ctx.get(dut.irq_in.ready), ctx.get(dut.ctl.ready)
        if ctx.get(dut.irq_out.valid) and out_ready:
            self.out.append((self.cycle, unpack(LAY["irq_out"],
                                                ctx.get(dut.irq_out.payload.as_value()))))
        if ctx.get(dut.fault.valid):
            self.faults.append(unpack(LAY["fault"], ctx.get(dut.fault.payload.as_value())))
        self.in_ready.append(irq_ready)
        await ctx.tick()
        self.cycle += 1
        return irq_ready, ctl_ready

    async def command(self, cmd: RemapCommand) -> None:
        while not (await self.tick(cmd=cmd))[1]:
            pass

    async def program(self, masked=()) -> None:
        for vf in range(P.n_vfs):
            for vector in range(P.n_vectors):
                await self.command(RemapCommand.write(vf, vector, entry(
                    vf, vector, mask=(vf, vector) in masked)))

    async def idle(self, cycles: int) -> None:
        for _ in range(cycles):
            await self.tick()

    def read(self) -> tuple[dict, int]:
        return (unpack(LAY["rd_entry"], self.ctx.get(self.dut.rd_entry.as_value())),
                self.ctx.get(self.dut.rd_pending))


def directed(masked=(), fault_ready: bool = True):
    """The decorated ``async def test_...(ctx, dut, d)`` becomes a test run on a fresh
    ``IrqRemap(P)`` (``dut``) driven by ``d = Directed(ctx, dut)`` after ``d.program(masked)``
    (with the fault reader stalled unless ``fault_ready``)."""
    def run(scenario) -> None:
        dut = build_remap(P)

        async def bench(ctx):
            d = Directed(ctx, dut)
            ctx.set(dut.fault.ready, int(fault_ready))
            await d.program(masked)
            await scenario(ctx, dut, d)
        simulate(dut, bench)
    return scenario_test(run)


def irq(vf: int, vector: int, src=None) -> dict:
    src = (0, vf) if src is None else src
    return {"handle": P.handle(vf, vector), "source_device": src[0], "source_slot": src[1]}


@directed()
async def test_storm_is_one_per_cycle_with_two_cycles_latency(ctx, dut, d):
    order = [(vf, v) for vf in range(P.n_vfs) for v in range(P.n_vectors)] * 8
    start = d.cycle
    for vf, v in order:
        ready, _ = await d.tick(irq(vf, v))
        assert ready
    await d.idle(4)
    assert [c - start for c, _ in d.out] == [i + 2 for i in range(len(order))]
    assert [(b["vf"], b["vector"]) for _, b in d.out] == order
    assert all(b["vm"] == b["vf"] and b["guest_vector"] == 0x10 * b["vf"] + b["vector"]
               for _, b in d.out)
    assert ctx.get(dut.raised_count) == ctx.get(dut.delivered_count) == len(order)


@directed(masked={(1, 2)})
async def test_mask_pending_coalesce_unmask_and_read(ctx, dut, d):
    for _ in range(3):
        await d.tick(irq(1, 2))
    await d.tick(irq(1, 1))
    await d.idle(3)
    assert [(b["vf"], b["vector"]) for _, b in d.out] == [(1, 1)]
    assert ctx.get(dut.coalesced_count) == 2
    await d.command(RemapCommand.read(1, 2))
    got, pending = d.read()
    assert RemapEntry.from_dict(got) == entry(1, 2, mask=True) and pending == 1
    new = RemapEntry(True, False, ValidationMode.EXACT, 0, 1, 5, 0x77)
    at = d.cycle
    await d.command(RemapCommand.write(1, 2, new))   # the unmask
    await d.idle(3)
    assert [(c - at, b) for c, b in d.out[1:]] == [   # valid the cycle after the write
        (1, {"vm": 5, "guest_vector": 0x77, "vf": 1, "vector": 2})]
    await d.command(RemapCommand.read(1, 2))
    assert d.read()[1] == 0
    await d.command(RemapCommand.write(1, 2, new))   # writing again sends nothing
    await d.idle(3)
    assert len(d.out) == 2


@directed(masked={(2, 1)})
async def test_hold_retarget_release_replay_timing_and_spoof_record(ctx, dut, d):
    await d.command(RemapCommand.hold(2))
    assert ctx.get(dut.held) == 0b0100
    for v in (3, 0, 1, 3):
        await d.tick(irq(2, v))
    await d.command(RemapCommand.retarget(2, 1, 9))
    await d.tick(irq(2, 2))               # from the old location: blocked now
    await d.tick(irq(2, 2, src=(1, 9)))   # from the new one: pending
    await d.idle(2)
    assert d.out == []
    assert d.faults == [{"source_device": 0, "source_slot": 2, "vf": 2, "vector": 2,
                         "reason": FaultReason.SOURCE_MISMATCH}]
    # RELEASE with 4 pending vectors (1 masked): busy for 5 cycles, irq_in waits.
    at = d.cycle
    await d.command(RemapCommand.release(2))
    busy = []
    for _ in range(8):
        busy.append(ctx.get(dut.busy))
        ready, _ = await d.tick(irq(2, 0, src=(1, 9)))
    assert busy == [1] * 5 + [0] * 3
    assert d.in_ready[-8:] == [0] * 5 + [1] * 3
    replays = [(c - at, b["vector"]) for c, b in d.out]
    # In vector order, one step per pending vector; masked vector 1 takes its step.
    assert replays[:3] == [(3, 0), (5, 2), (6, 3)]
    assert replays[3:] == [(8, 0)]   # accepted right after the replay, 2 cycles latency
    await d.command(RemapCommand.read(2, 1))
    got, pending = d.read()
    assert pending == 1 and (got["source_device"], got["source_slot"]) == (1, 9)
    assert ctx.get(dut.held) == 0 and ctx.get(dut.blocked_count) == 1


@directed(fault_ready=False)   # P's fault_depth is 4
async def test_spoofs_and_absent_entries_are_blocked_recorded_and_fault_fifo_overflows(ctx, dut, d):
    await d.command(RemapCommand.write(0, 3, RemapEntry()))   # not present
    for _ in range(3):
        await d.tick(irq(1, 0, src=(0, 0)))                    # VF 0 names VF 1's entry
    for _ in range(3):
        await d.tick(irq(0, 3))
    await d.idle(2)
    assert d.out == []
    assert ctx.get(dut.blocked_count) == 6 and ctx.get(dut.fault_dropped) == 2
    records = []
    ctx.set(dut.fault.ready, 1)
    while ctx.get(dut.fault.valid):
        records.append(unpack(LAY["fault"], ctx.get(dut.fault.payload.as_value())))
        await ctx.tick()
    assert records == [{"source_device": 0, "source_slot": 0, "vf": 1, "vector": 0,
                        "reason": FaultReason.SOURCE_MISMATCH}] * 3 + [
                       {"source_device": 0, "source_slot": 0, "vf": 0, "vector": 3,
                        "reason": FaultReason.NOT_PRESENT}]


@directed()
async def test_output_backpressure_stalls_the_input_and_loses_nothing(ctx, dut, d):
    sent = 0
    for cycle in range(60):
        ready, _ = await d.tick(irq(sent % 4, 1), out_ready=int(cycle >= 30))
        sent += ready
    assert d.in_ready[-60:-30] == [1] * 4 + [0] * 26   # the 4-deep buffer fills, then waits
    await d.idle(5)
    assert len(d.out) == sent and [b["vf"] for _, b in d.out] == [i % 4 for i in range(sent)]


@directed()
async def test_a_command_in_a_storm_costs_two_input_cycles(ctx, dut, d):
    for _ in range(3):
        await d.tick(irq(0, 0))
    assert (await d.tick(irq(0, 0), cmd=RemapCommand.hold(3))) == (0, 0)
    assert (await d.tick(irq(0, 0), cmd=RemapCommand.hold(3))) == (0, 1)
    assert (await d.tick(irq(0, 0))) == (1, 1)
    await d.command(RemapCommand(7, 0, 0))   # unknown op
    assert ctx.get(dut.held) == 0b1000 and ctx.get(dut.ctl_errors) == 1


# ---------------------------------------------------------------- random, against the model
def run_bench(params: RemapParams, seed: int, span: int, knobs: BenchKnobs | None = None,
              fault_inject: str | None = None, **script):
    rng = random.Random(seed)
    bench = PortBench(params, seed, control_script(params, rng, span, **script), knobs)
    dut = build_remap(params, fault_inject)

    def port(name):
        obj = dut
        for part in name.split("__"):
            obj = getattr(obj, part)
        return Value.cast(obj)
    inputs = {name: port(name) for name in bench.input_names()}
    outputs = {name: port(name) for name in bench.output_names()}

    async def testbench(ctx):
        settle = 0
        while bench.cycle < 3 * span:
            if not bench.busy():
                if settle == 0:
                    bench.finish_mode()
                settle += 1
                if (settle > 8 and bench.sb.outstanding() == 0
                        and not bench.last_out["fault__valid"] and not bench.last_out["busy"]):
                    break
                if settle > 400:
                    break
            for name, value in bench.drive().items():
                ctx.set(inputs[name], value)
            sampled = await ctx.tick().sample(*outputs.values())
            bench.edge(dict(zip(outputs, sampled[-len(outputs):], strict=True)))

    simulate(dut, testbench)
    totals = bench.sb.finish(bench.hw_counters(), bench.last_out["fault__valid"])
    return bench, totals


SCENARIOS = {
    "storm": BenchKnobs(),
    "backpressure": BenchKnobs(out_backpressure=0.6, fault_backpressure=0.9),
    "spoof_heavy": BenchKnobs(p_spoof=0.3, p_absent=0.1, fault_backpressure=0.3),
    "sparse": BenchKnobs(raise_idle=0.5, out_backpressure=0.2),
}


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("scenario", list(SCENARIOS))
@pytest.mark.parametrize("params", [BENCH_PARAMS, ODD_PARAMS], ids=["4x4", "3x3"])
def test_random_against_the_model(params, scenario, seed):
    bench, totals = run_bench(params, seed, 1500, SCENARIOS[scenario])
    assert bench.sb.messages == [], "\n".join(bench.sb.messages[:10])
    assert totals.errors == 0 and totals.lost == 0 and totals.duplicated == 0
    assert totals.spoof_blocked == totals.spoof_attempts > 0
    assert totals.release_replays > 0 and totals.coalesced > 0 and totals.reads_checked > 0
    assert totals.pending_at_end == 0     # the script ends unmasking and releasing all


def test_random_single_vf_single_vector():
    params = RemapParams(n_vfs=1, n_vectors=1, vm_bits=1, guest_vector_bits=1, fault_depth=1)
    bench, totals = run_bench(params, 5, 1000, migrations=4, mask_toggles=10)
    assert totals.errors == 0, "\n".join(bench.sb.messages[:10])
    assert totals.raised > 500 and totals.release_replays > 0


@pytest.mark.parametrize("fault_inject", FAULT_INJECTIONS)
def test_broken_remapper_fails_the_scoreboard(fault_inject):
    """The negative test: each deliberate bug must be seen, as what it is."""
    bench, totals = run_bench(BENCH_PARAMS, 1, 1500, fault_inject=fault_inject)
    assert totals.errors > 0
    if fault_inject == "double_replay":
        assert totals.duplicated > 0 and totals.lost == 0
    else:
        assert totals.lost > 0 and totals.duplicated == 0
