"""VfStats: DOWNTIME and its split by phase (amaranth.sim)."""

from __future__ import annotations

from hdl.system.stats import VfStats
from model.config import SystemConfig
from model.regmap import DowntimePhase as P

from .simutil import run_sim

VF = 1


def _stats():
    return VfStats(SystemConfig(n_vfs=2, host_slots=2, offload_slots=2))


async def _held(ctx, dut, schedule):
    """Hold VF ``VF`` through ``schedule``: (device, phase, cycles); device None names no
    engine (the walker at none of the phases)."""
    ctx.set(dut.want_held, 1 << VF)
    for device, phase, cycles in schedule:
        for dev in ("host", "offload"):
            named = dev == device
            ctx.set(getattr(dut, f"{dev}_phase"), phase if named else P.RELEASE)
            ctx.set(getattr(dut, f"{dev}_phase_vf"), VF if named else 0)
        await ctx.tick().repeat(cycles)


def _phases(ctx, dut):
    return {p.name: ctx.get(dut.phases[VF][p]) for p in P}


def test_each_held_cycle_counts_in_the_phase_its_engine_names():
    dut = _stats()

    async def bench(ctx):
        await _held(ctx, dut, [("host", P.DRAIN, 3), ("host", P.COPY, 4), (None, P.RELEASE, 1),
                               ("host", P.SWITCHOVER, 2), ("offload", P.COMMIT, 5)])
        # unheld, but the unit at the VF's place still replays: the rest is RELEASE
        ctx.set(dut.want_held, 0)
        ctx.set(dut.host_phase, P.RELEASE)
        ctx.set(dut.offload_phase, P.RELEASE)
        ctx.set(dut.host_resuming, 0b01)      # the VF's slot (0)
        await ctx.tick().repeat(2)
        ctx.set(dut.host_resuming, 0b00)
        await ctx.tick().repeat(3)
        assert _phases(ctx, dut) == {"DRAIN": 3, "COPY": 4, "SWITCHOVER": 2, "COMMIT": 5,
                                     "RELEASE": 1 + 2}
        assert ctx.get(dut.downtime[VF]) == 3 + 4 + 1 + 2 + 5 + 2
        assert ctx.get(dut.downtime[0]) == 0

    run_sim(dut, bench)


def test_a_phase_named_for_another_vf_does_not_count_and_a_new_hold_restarts():
    dut = _stats()

    async def bench(ctx):
        await _held(ctx, dut, [("host", P.COPY, 6)])
        ctx.set(dut.want_held, 0)
        await ctx.tick().repeat(2)
        # the second hold: the host engine works on VF 0 meanwhile (not this VF's phase)
        ctx.set(dut.want_held, 1 << VF)
        ctx.set(dut.host_phase, P.DRAIN)
        ctx.set(dut.host_phase_vf, 0)
        await ctx.tick().repeat(4)
        ctx.set(dut.want_held, 0)
        await ctx.tick().repeat(2)
        assert _phases(ctx, dut) == {"DRAIN": 0, "COPY": 0, "SWITCHOVER": 0, "COMMIT": 0,
                                     "RELEASE": 4}
        assert ctx.get(dut.downtime[VF]) == 4

    run_sim(dut, bench)
