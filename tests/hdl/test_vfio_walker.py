# amaranth: UnusedElaboratable=no
"""hdl/mig_engine/walker.py in amaranth.sim: every request of every flag set, arc by arc.

The expectations come from ``model.vfio`` (``path`` for the states a walk passes through,
``next_state`` for the set of legal arcs), never from the walker; the planted
``illegal_arc`` bug must be caught by the same checks.
"""

from __future__ import annotations

import itertools

import pytest

from hdl.mig_engine import VfioWalker
from model.vfio import DeviceState, MigrationFlags, next_state, path, supported_states
from tests.hdl.simutil import run_sim

S = DeviceState
F = MigrationFlags
FLAG_SETS = [F.STOP_COPY, F.STOP_COPY | F.P2P, F.STOP_COPY | F.PRE_COPY,
             F.STOP_COPY | F.P2P | F.PRE_COPY]


def legal_arcs(flags: MigrationFlags) -> set[tuple[S, S]]:
    """Every (src, dst) VFIO v2 may take on a device with ``flags``."""
    have = supported_states(flags) - {S.ERROR}
    return {(c, next_state(c, t, flags)) for c in have for t in have if c != t}


def walk_all(dut: VfioWalker, pairs: list[tuple[S, S]]) -> dict[tuple[S, S], object]:
    """Request every (current, target) pair; record the arcs walked or "error"."""
    seen: dict[tuple[S, S], object] = {}

    async def bench(ctx):
        for current, target in pairs:
            ctx.set(dut.request.payload, {"current": current, "target": target})
            ctx.set(dut.request.valid, 1)
            error = ctx.get(dut.error)
            await ctx.tick()
            ctx.set(dut.request.valid, 0)
            if error:
                seen[current, target] = "error"
                continue
            arcs: list[tuple[S, S]] = []
            ctx.set(dut.arc.ready, 1)
            while ctx.get(dut.arc.valid) and len(arcs) < 10:
                src, dst = ctx.get(dut.arc.payload.src), ctx.get(dut.arc.payload.dst)
                assert src == ctx.get(dut.state)
                await ctx.tick()
                assert ctx.get(dut.state) == dst
                arcs.append((S(src), S(dst)))
            ctx.set(dut.arc.ready, 0)
            assert not ctx.get(dut.busy) and ctx.get(dut.state) == ctx.get(dut.target)
            seen[current, target] = arcs

    run_sim(dut, bench)
    return seen


def all_pairs(flags: MigrationFlags) -> list[tuple[S, S]]:
    states = sorted(supported_states(flags))
    return [(c, t) for c, t in itertools.product(states, states) if c != S.ERROR]


@pytest.mark.parametrize("flags", FLAG_SETS, ids=lambda f: f"flags{int(f)}")
def test_every_request_walks_vfio_path(flags):
    pairs = all_pairs(flags)
    seen = walk_all(VfioWalker(flags), pairs)
    for current, target in pairs:
        try:
            expected = path(current, target, flags)
        except ValueError:
            assert seen[current, target] == "error", (current, target)
            continue
        states = [dst for _, dst in seen[current, target]]
        assert states == expected, (current.name, target.name)


def test_illegal_arc_fault_is_caught():
    flags = F.STOP_COPY | F.P2P | F.PRE_COPY
    seen = walk_all(VfioWalker(flags, _fault_inject="illegal_arc"), all_pairs(flags))
    taken = {arc for arcs in seen.values() if arcs != "error" for arc in arcs}
    assert taken - legal_arcs(flags) == {(S.STOP_COPY, S.RUNNING)}


def test_held_arc_waits_and_rollback_restarts():
    """Without ``arc.ready`` the state holds; a new request mid-walk restarts the walk."""
    dut = VfioWalker(F.STOP_COPY | F.P2P | F.PRE_COPY)

    async def bench(ctx):
        ctx.set(dut.request.payload, {"current": S.RUNNING, "target": S.STOP_COPY})
        ctx.set(dut.request.valid, 1)
        await ctx.tick()
        ctx.set(dut.request.valid, 0)
        await ctx.tick().repeat(3)
        assert S(ctx.get(dut.state)) == S.RUNNING and ctx.get(dut.busy)
        assert S(ctx.get(dut.arc.payload.dst)) == S.RUNNING_P2P
        ctx.set(dut.arc.ready, 1)
        await ctx.tick()
        ctx.set(dut.arc.ready, 0)
        assert S(ctx.get(dut.state)) == S.RUNNING_P2P
        # Rollback: the request wins over an arc taken in the same cycle.
        ctx.set(dut.request.payload, {"current": S.STOP, "target": S.RUNNING})
        ctx.set(dut.request.valid, 1)
        ctx.set(dut.arc.ready, 1)
        await ctx.tick()
        ctx.set(dut.request.valid, 0)
        assert S(ctx.get(dut.state)) == S.STOP and S(ctx.get(dut.target)) == S.RUNNING
        assert S(ctx.get(dut.arc.payload.dst)) == S.RUNNING_P2P

    run_sim(dut, bench)


def test_invalid_request_changes_nothing():
    dut = VfioWalker(F.STOP_COPY)  # no P2P, no PRE_COPY

    async def bench(ctx):
        ctx.set(dut.request.payload, {"current": S.RUNNING, "target": S.PRE_COPY})
        ctx.set(dut.request.valid, 1)
        assert ctx.get(dut.error)
        await ctx.tick()
        ctx.set(dut.request.valid, 0)
        assert not ctx.get(dut.error) and not ctx.get(dut.busy)
        assert S(ctx.get(dut.state)) == S.RUNNING == S(ctx.get(dut.target))

    run_sim(dut, bench)


def test_error_is_never_a_valid_target_not_even_from_error():
    """VFIO never lets a user ask for ERROR; the walker once took ERROR -> ERROR as a no-op
    (found by the formal harness)."""
    dut = VfioWalker(F.STOP_COPY)

    async def bench(ctx):
        for current in (S.ERROR, S.RUNNING, S.STOP):
            ctx.set(dut.request.payload, {"current": current, "target": S.ERROR})
            ctx.set(dut.request.valid, 1)
            assert ctx.get(dut.error), f"{current.name} -> ERROR accepted"
            await ctx.tick()
            ctx.set(dut.request.valid, 0)
            assert S(ctx.get(dut.state)) == S.RUNNING == S(ctx.get(dut.target))

    run_sim(dut, bench)


def test_bad_parameters():
    with pytest.raises(ValueError, match=r"^VfioWalker flags: migration flags .* lack "
                                         r"STOP_COPY, which VFIO makes mandatory$"):
        VfioWalker(F.P2P)
    with pytest.raises(ValueError, match=r"^VfioWalker _fault_inject must be None or one of "
                                         r"illegal_arc, not 'nope'$"):
        VfioWalker(F.STOP_COPY, _fault_inject="nope")
