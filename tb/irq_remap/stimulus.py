"""Stimulus of the irq_remap bench: raise events, VF placements and the seeded control
script (remapping-table programming, HOLD/RETARGET/RELEASE moves)."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from enum import Enum

from model.irq_remap import (
    RemapCommand,
    RemapEntry,
    RemapOp,
    RemapParams,
    ValidationMode,
)


# ---------------------------------------------------------------- stimulus
class RaiseKind(Enum):
    OWN = "own"        # a VF's own entry, from its current location
    SPOOF = "spoof"    # another VF's (EXACT) entry, from the raiser's own location
    ABSENT = "absent"  # an entry that never exists (out of range, or a permanent hole)


@dataclass(frozen=True)
class RaiseEvent:
    handle: int
    source_device: int
    source_slot: int
    data: int = 0
    kind: RaiseKind = RaiseKind.OWN
    raiser: int = 0    # the VF that sent it

    def to_dict(self) -> dict[str, int]:
        return {"handle": self.handle, "source_device": self.source_device,
                "source_slot": self.source_slot, "data": self.data}


def initial_locations(params: RemapParams) -> list[tuple[int, int]]:
    """Every VF starts on the host, VF i in slot i (as the system)."""
    return [(0, vf) for vf in range(params.n_vfs)]


def holes(params: RemapParams) -> list[tuple[int, int]]:
    """Entries never made present, plus handles that name no entry at all."""
    out = [(0, params.n_vectors - 1)] if params.n_vectors > 1 else []
    out += [(vf, vector) for vf in range(1 << params.vf_bits)
            for vector in range(params.vector_stride) if not params.valid(vf, vector)]
    return out


def open_vfs(params: RemapParams) -> set[int]:
    """VFs whose entries use ValidationMode.OFF (nobody spoofs them: it would work)."""
    return {params.n_vfs - 1} if params.n_vfs > 2 else set()


class Traffic:
    """Interrupts from every VF that is not quiet, at its current location."""

    def __init__(self, params: RemapParams, rng: random.Random, p_spoof: float = 0.04,
                 p_absent: float = 0.03):
        self.params, self.rng = params, rng
        self.p_spoof, self.p_absent = p_spoof, p_absent
        self.location = initial_locations(params)
        self.quiet: set[int] = set()
        self.holes = holes(params)
        self.spoof_targets = [vf for vf in range(params.n_vfs) if vf not in open_vfs(params)]
        self.made = Counter()
        self.unsent = Counter()   # per raiser: made, not yet accepted by irq_in

    def sent(self, ev: RaiseEvent) -> None:
        """``irq_in`` accepted ``ev`` (the benches call this)."""
        self.unsent[ev.raiser] -= 1

    def next(self) -> RaiseEvent | None:
        p, rng = self.params, self.rng
        talkers = [vf for vf in range(p.n_vfs) if vf not in self.quiet]
        if not talkers:
            return None
        vf = rng.choice(talkers)
        dev, slot = self.location[vf]
        roll = rng.random()
        targets = [t for t in self.spoof_targets if t != vf]
        if roll < self.p_spoof and targets:
            kind, target = RaiseKind.SPOOF, (rng.choice(targets), rng.randrange(p.n_vectors))
        elif roll < self.p_spoof + self.p_absent and self.holes:
            kind, target = RaiseKind.ABSENT, rng.choice(self.holes)
        else:
            kind, target = RaiseKind.OWN, (vf, rng.randrange(p.n_vectors))
            if target in self.holes:
                kind = RaiseKind.ABSENT
        self.made[kind] += 1
        self.unsent[vf] += 1
        return RaiseEvent(p.handle(*target), dev, slot, rng.getrandbits(32), kind, vf)


# Script steps: ("cmd", RemapCommand) | ("quiet", vf) | ("drain", vf) | ("move", vf, loc)
#             | ("talk", vf); each with the cycle it is due.
@dataclass(frozen=True)
class Step:
    due: int
    what: str
    vf: int = 0
    cmd: RemapCommand | None = None
    location: tuple[int, int] | None = None


def _entry(params: RemapParams, rng: random.Random, vf: int, location, mask: bool = False):
    mode = ValidationMode.OFF if vf in open_vfs(params) else ValidationMode.EXACT
    return RemapEntry(True, mask, mode, location[0], location[1],
                      rng.randrange(1 << params.vm_bits),
                      rng.randrange(1 << params.guest_vector_bits))


def control_script(params: RemapParams, rng: random.Random, span: int, *,
                   migrations: int = 6, mask_toggles: int = 30, absent_toggles: int = 4,
                   reads: int = 12, invalid: int = 3, start: int = 0) -> list[Step]:
    """A timeline of control actions over ``span`` cycles (see the module docstring)."""
    p = params
    hole_set = set(holes(p))
    loc = initial_locations(p)
    table: dict[tuple[int, int], RemapEntry] = {}
    steps: list[Step] = []
    t = start
    for vf in range(p.n_vfs):
        for vector in range(p.n_vectors):
            if (vf, vector) in hole_set:
                continue
            table[vf, vector] = _entry(p, rng, vf, loc[vf], mask=rng.random() < 0.15)
            steps.append(Step(t, "cmd", cmd=RemapCommand.write(vf, vector, table[vf, vector])))
    body_start = t + 1
    timeline: list[Step] = []

    def at(due, what, **kw):
        timeline.append(Step(body_start + due, what, **kw))

    # Migrations: several overlap; each VF's migrations do not. A location is taken by
    # one VF at a time, and only well after its previous VF left it (chronologically), so
    # a raise from a VF's own location never matches another VF's expected source id.
    busy_until = [0] * p.n_vfs
    windows_by_vf = []
    for _ in range(migrations):
        vf = rng.randrange(p.n_vfs)
        begin = max(busy_until[vf], rng.randrange(max(1, span - 200)))
        hold_len = rng.randint(20, 150)
        busy_until[vf] = begin + hold_len + 10
        windows_by_vf.append((begin, hold_len, vf))
    freed_at = {where: None for where in loc}   # None: occupied
    for begin, hold_len, vf in sorted(windows_by_vf):
        old = loc[vf]
        to = 1 - old[0]
        free = [(to, slot) for slot in range(8 if to == 0 else 4)
                if (to, slot) not in freed_at or (freed_at[to, slot] is not None
                                                  and freed_at[to, slot] < begin)]
        if not free:
            continue
        new = rng.choice(free)
        switch = begin + hold_len // 3
        freed_at[old], freed_at[new] = switch, None
        at(begin, "cmd", cmd=RemapCommand.hold(vf))
        at(switch, "quiet", vf=vf)
        at(switch + 1, "drain", vf=vf)
        at(switch + 2, "cmd", cmd=RemapCommand.retarget(vf, *new))
        at(switch + 3, "move", vf=vf, location=new)
        at(switch + 4, "talk", vf=vf)
        at(begin + hold_len, "cmd", cmd=RemapCommand.release(vf))
        loc[vf] = new
    # Entry writes keep the source the script believes current at their due time; a write
    # racing a migration of the same VF could name the old location, so writes go to
    # entries of VFs that are not migrating then.
    windows = [[] for _ in range(p.n_vfs)]
    for s in timeline:
        if s.what == "cmd" and s.cmd.op == RemapOp.HOLD:
            windows[s.cmd.vf].append([s.due, None])
        elif s.what == "cmd" and s.cmd.op == RemapOp.RELEASE:
            windows[s.cmd.vf][-1][1] = s.due
    where_at = _location_timeline(p, timeline)

    def calm(vf, due):
        return not any(a - 5 <= due <= b + 5 for a, b in windows[vf])

    entries = sorted(table)
    tries = 0
    done = 0
    while done < mask_toggles + absent_toggles and tries < 50 * (mask_toggles + 1):
        tries += 1
        vf, vector = rng.choice(entries)
        due = rng.randrange(span)
        if not calm(vf, due):
            continue
        src = where_at(vf, due)
        base = _entry(p, rng, vf, src, mask=rng.random() < 0.5)
        if done >= mask_toggles:   # make it not present for a while, then back
            at(due, "cmd", cmd=RemapCommand.write(vf, vector, RemapEntry()))
            back = due + rng.randint(5, 40)
            if calm(vf, back):
                at(back, "cmd", cmd=RemapCommand.write(vf, vector,
                                                       _entry(p, rng, vf, where_at(vf, back))))
        else:
            at(due, "cmd", cmd=RemapCommand.write(vf, vector, base))
        done += 1
    for _ in range(reads):
        vf, vector = rng.randrange(p.n_vfs), rng.randrange(p.n_vectors)
        at(rng.randrange(span), "cmd", cmd=RemapCommand.read(vf, vector))
    bad = []
    if p.n_vfs < 1 << p.vf_bits:
        bad.append(RemapCommand.hold(p.n_vfs))
    if p.n_vectors < p.vector_stride:
        bad.append(RemapCommand.read(0, p.n_vectors))
    for _ in range(invalid):
        due = rng.randrange(span)
        if bad and rng.random() < 0.5:
            at(due, "cmd", cmd=rng.choice(bad))
        else:
            at(due, "cmd", cmd=RemapCommand(5 + rng.randrange(3), 0, 0))  # unknown op
    timeline.sort(key=lambda s: s.due)
    steps += timeline
    # The end: every entry present and unmasked, every VF released, everything read back.
    end = body_start + span
    for (vf, vector), _ in sorted(table.items()):
        steps.append(Step(end, "cmd", cmd=RemapCommand.write(
            vf, vector, _entry(p, rng, vf, loc[vf]))))
    for vf in range(p.n_vfs):
        steps.append(Step(end, "cmd", cmd=RemapCommand.release(vf)))
    for vf in range(p.n_vfs):
        for vector in range(p.n_vectors):
            steps.append(Step(end, "cmd", cmd=RemapCommand.read(vf, vector)))
    return steps


def _location_timeline(params: RemapParams, timeline: list[Step]):
    moves = sorted((s.due, s.vf, s.location) for s in timeline if s.what == "move")
    start = initial_locations(params)

    def where_at(vf: int, due: int) -> tuple[int, int]:
        here = start[vf]
        for when, who, new in moves:
            if who == vf and when <= due:
                here = new
        return here
    return where_at


# ---------------------------------------------------------------- scoreboard
