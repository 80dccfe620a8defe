"""Benches of hdl/irq_remap.py: the parts both simulators share.

- ``IrqScoreboard``: the interrupt scoreboard, fed by ``model.irq_remap.GoldenIrqRemap``.
  It takes cycle-stamped port events (interrupt accepted, command accepted, delivery
  taken, fault record popped, READ result) and proves, per raised (VF, vector) event:
  delivered exactly once -- or coalesced into a pending bit that is delivered once, or
  blocked, or still pending at the end -- to the right VM and guest vector, in decision
  order, never while masked or held (the model only delivers deliverable entries, and
  every delivery must match one of the model's); blocked ones counted (``blocked_count``)
  and recorded (every fault record popped is compared). It also checks the stimulus'
  intent independently of the model: a spoofed or absent-entry raise is never delivered,
  a raise from a VF's own location is never blocked for its source id.
- ``Traffic``: interrupt storms from every VF's current location, with spoofs (a VF naming
  another VF's entry) and raises naming entries that do not exist.
- ``control_script``: table programming, mask toggles, overlapping migrations (HOLD,
  drain, RETARGET, RELEASE), not-present entries, READs, invalid commands, and a final
  unmask-and-release so that every pending interrupt must come out.
- ``PortBench``: the whole bench at cycle level (drive inputs, then ``edge`` with the
  outputs sampled before the clock edge); tests/hdl/test_irq_remap.py runs it in amaranth.sim.
  The cocotb/pyuvm bench (tb/irq_remap/test_irq_remap.py) reuses scoreboard, traffic and
  script with its own agents.

Timing contract used (hdl/irq_remap.py): an interrupt accepted in cycle ``c`` executes in
``c + 1``; a command executes in its accepting cycle; a READ's result is on ``rd_*`` from
``c + 1``; a fault record pushed in cycle ``e`` counts against ``fault_depth`` before a pop
in the same cycle.
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter, deque
from dataclasses import asdict, dataclass
from enum import Enum

from amaranth.lib import data

from model.irq_remap import (
    FaultReason,
    FaultRecord,
    GoldenIrqRemap,
    Outcome,
    RemapCommand,
    RemapEntry,
    RemapOp,
    RemapParams,
    ValidationMode,
)

ENV_PARAMS = "IRQ_REMAP_PARAMS"
ENV_REPORT = "IRQ_REMAP_REPORT"
ENV_KNOBS = "IRQ_REMAP_KNOBS"

# The configuration of the cocotb benches (and the main amaranth.sim one). A small
# fault_depth makes the fault FIFO overflow under spoof bursts.
BENCH_PARAMS = RemapParams(n_vfs=4, n_vectors=4, vm_bits=4, guest_vector_bits=8, fault_depth=4)
# A second geometry: counts that are not powers of two leave out-of-range handles.
ODD_PARAMS = RemapParams(n_vfs=3, n_vectors=3, vm_bits=3, guest_vector_bits=6, fault_depth=2)

HW_COUNTERS = ("raised_count", "delivered_count", "blocked_count", "coalesced_count",
               "fault_dropped", "ctl_errors")


def build_remap(params: RemapParams = BENCH_PARAMS, fault_inject: str | None = None):
    from hdl.irq_remap import IrqRemap
    return IrqRemap(params.n_vfs, params.n_vectors, vm_bits=params.vm_bits,
                    guest_vector_bits=params.guest_vector_bits,
                    fault_depth=params.fault_depth, _fault_inject=fault_inject)


def params_to_env(params: RemapParams) -> dict[str, str]:
    return {ENV_PARAMS: json.dumps(params.to_dict(), sort_keys=True)}


def params_from_env() -> RemapParams:
    text = os.environ.get(ENV_PARAMS)
    return RemapParams(**json.loads(text)) if text else BENCH_PARAMS


def layouts(params: RemapParams) -> dict[str, data.Layout]:
    from hdl.irq_remap import (
        control_layout,
        delivery_layout,
        entry_layout,
        fault_layout,
        raise_layout,
    )
    return {"irq_in": raise_layout(params), "irq_out": delivery_layout(params),
            "ctl": control_layout(params), "fault": fault_layout(params),
            "rd_entry": entry_layout(params)}


def pack(layout: data.Layout, values: dict) -> int:
    word = 0
    for name, fld in layout:
        word |= (int(values.get(name, 0)) & ((1 << fld.width) - 1)) << fld.offset
    return word


def unpack(layout: data.Layout, word: int) -> dict[str, int]:
    return {name: word >> fld.offset & ((1 << fld.width) - 1) for name, fld in layout}


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
@dataclass
class IrqTotals:
    """What a run did; ``errors`` counts every scoreboard complaint."""
    raised: int = 0
    delivered: int = 0          # beats seen on irq_out and matched
    delivered_direct: int = 0
    replayed: int = 0           # deliveries of pending bits (unmask or release)
    release_replays: int = 0
    pending_set: int = 0
    coalesced: int = 0
    blocked: int = 0
    blocked_not_present: int = 0
    blocked_source_mismatch: int = 0
    pending_at_end: int = 0     # raises whose pending bit was never delivered
    duplicated: int = 0         # beats with no expected delivery left for their entry
    lost: int = 0               # expected deliveries never seen
    misdelivered: int = 0       # right entry, wrong VM / guest vector
    out_of_order: int = 0
    held_raises: int = 0        # raises that found their VF held
    overlapping_holds: int = 0  # HOLDs of a VF while another VF was held
    spoof_attempts: int = 0
    spoof_blocked: int = 0
    absent_attempts: int = 0
    faults_checked: int = 0
    fault_dropped: int = 0
    reads_checked: int = 0
    ctl_errors: int = 0
    commands: int = 0
    errors: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class _Expected:
    seq: int
    delivery: object


class IrqScoreboard:
    """See the module docstring. Feed events in cycle order; call ``finish`` at the end."""

    MAX_MESSAGES = 50

    def __init__(self, params: RemapParams):
        self.params = params
        self.model = GoldenIrqRemap(params)
        self.totals = IrqTotals()
        self.messages: list[str] = []
        self._inflight: deque[tuple[int, int, RaiseEvent]] = deque()  # (exec cycle, id, ev)
        self._expected: dict[tuple[int, int], deque[_Expected]] = {}
        self._seq = 0
        self._last_seq = -1
        self._reads: deque[tuple[int, RemapEntry, bool]] = deque()
        self._next_id = 0
        self._satisfied: set[int] = set()

    # ------------------------------------------------------------ events
    def raised(self, cycle: int, ev: RaiseEvent) -> None:
        self._flush(cycle)
        self._inflight.append((cycle + 1, self._next_id, ev))
        self._next_id += 1

    def command(self, cycle: int, cmd: RemapCommand) -> None:
        self._flush(cycle)
        self.totals.commands += 1
        held_before = sum(self.model.held)
        result = self.model.command(cmd)
        self._expect(result.deliveries)
        if cmd.op == RemapOp.HOLD and result.accepted and sum(self.model.held) > held_before:
            self.totals.overlapping_holds += int(held_before > 0)
        if cmd.op == RemapOp.RELEASE:
            self.totals.release_replays += len(result.deliveries)
        if result.read is not None:
            self._reads.append((cycle, *result.read))

    def delivered(self, cycle: int, beat: dict) -> None:
        self._flush(cycle)
        key = (beat["vf"], beat["vector"])
        queue = self._expected.get(key)
        if not queue:
            self.totals.duplicated += 1
            self._error(f"cycle {cycle}: delivery {beat} that nothing raised (or raised once "
                        f"and delivered twice)")
            return
        # Deliveries leave in decision order, so prefer the first expected one after the
        # last match; an expected delivery skipped here is reported lost at the end.
        message = (beat["vm"], beat["guest_vector"])
        same = [e for e in queue if (e.delivery.vm, e.delivery.guest_vector) == message]
        later = [e for e in same if e.seq > self._last_seq]
        exp = (later or same or [queue[0]])[0]
        queue.remove(exp)
        d = exp.delivery
        if message != (d.vm, d.guest_vector):
            self.totals.misdelivered += 1
            self._error(f"cycle {cycle}: VF {d.vf} vector {d.vector} delivered to VM "
                        f"{beat['vm']} vector {beat['guest_vector']}, expected VM {d.vm} "
                        f"vector {d.guest_vector}")
        if exp.seq < self._last_seq:
            self.totals.out_of_order += 1
            self._error(f"cycle {cycle}: delivery {beat} out of decision order")
        self._last_seq = max(self._last_seq, exp.seq)
        for rid in d.raises:
            if rid in self._satisfied:
                self._error(f"raise #{rid} answered twice")
            self._satisfied.add(rid)
        self.totals.delivered += 1
        if d.replay:
            self.totals.replayed += 1
        else:
            self.totals.delivered_direct += 1

    def fault_popped(self, cycle: int, record: dict) -> None:
        self._flush(cycle)
        got = FaultRecord.from_dict(record) if record["reason"] in (1, 2) else record
        want = self.model.pop_fault()
        self.totals.faults_checked += 1
        if got != want:
            self._error(f"cycle {cycle}: fault record {got}, expected {want}")

    def read_result(self, cycle: int, entry: dict, pending: int) -> None:
        if not self._reads:
            self._error(f"cycle {cycle}: a READ result with no READ accepted")
            return
        when, want_entry, want_pending = self._reads.popleft()
        got = RemapEntry.from_dict(entry)
        self.totals.reads_checked += 1
        if (got, bool(pending)) != (want_entry, want_pending):
            self._error(f"cycle {cycle}: READ accepted in cycle {when} returned {got}, "
                        f"pending={pending}; expected {want_entry}, pending={want_pending}")

    def flush(self) -> None:
        """Execute every interrupt accepted so far (call when the inputs are idle)."""
        self._flush(None)

    @property
    def answered(self) -> int:
        """Raises answered by a delivery so far (each exactly once, or an error)."""
        return len(self._satisfied)

    def outstanding(self) -> int:
        """Deliveries the model expects that were not seen yet."""
        return sum(len(q) for q in self._expected.values()) + len(self._inflight)

    def finish(self, hw: dict[str, int] | None = None, faults_left: int | None = None
               ) -> IrqTotals:
        """Close the run: lost deliveries, counters, what is still pending.

        ``hw``: the hardware counters (``HW_COUNTERS``) at the end; ``faults_left``: whether
        ``fault.valid`` is still 1 (both optional)."""
        self.flush()
        m, t = self.model, self.totals
        for queue in self._expected.values():
            for exp in queue:
                t.lost += 1
                self._error(f"lost: VF {exp.delivery.vf} vector {exp.delivery.vector} -> VM "
                            f"{exp.delivery.vm} vector {exp.delivery.guest_vector} never "
                            f"delivered")
        self._expected.clear()
        t.pending_at_end = len(m.pending_raise_ids())
        t.raised, t.coalesced, t.blocked = m.raised, m.coalesced, m.blocked
        t.fault_dropped, t.ctl_errors = m.fault_dropped, m.ctl_errors
        answered = len(self._satisfied) + t.blocked + t.pending_at_end
        if t.lost == 0 and t.duplicated == 0 and answered != t.raised:
            self._error(f"accounting: {t.raised} raised but {len(self._satisfied)} delivered "
                        f"+ {t.blocked} blocked + {t.pending_at_end} pending")
        if hw is not None:
            want = {"raised_count": m.raised, "delivered_count": t.delivered,
                    "blocked_count": m.blocked, "coalesced_count": m.coalesced,
                    "fault_dropped": m.fault_dropped, "ctl_errors": m.ctl_errors}
            for name, value in want.items():
                if name in hw and hw[name] != value & ((1 << (16 if name == "ctl_errors"
                                                              else 32)) - 1):
                    self._error(f"counter {name} = {hw[name]}, expected {value}")
        if faults_left is not None and bool(faults_left) != bool(m.faults):
            self._error(f"the hardware {'still' if faults_left else 'no longer'} offers a "
                        f"fault record; the model has {len(m.faults)} left")
        return t

    # ------------------------------------------------------------ internals
    def _error(self, text: str) -> None:
        self.totals.errors += 1
        if len(self.messages) < self.MAX_MESSAGES:
            self.messages.append(text)

    def _expect(self, deliveries) -> None:
        for d in deliveries:
            self._expected.setdefault(d.key, deque()).append(_Expected(self._seq, d))
            self._seq += 1

    def _flush(self, cycle: int | None) -> None:
        while self._inflight and (cycle is None or self._inflight[0][0] <= cycle):
            _, rid, ev = self._inflight.popleft()
            self._execute(rid, ev)

    def _execute(self, rid: int, ev: RaiseEvent) -> None:
        p, m, t = self.params, self.model, self.totals
        vf, vector = p.split(ev.handle)
        was_held = p.valid(vf, vector) and m.held[vf]
        result = m.raise_interrupt(ev.handle, ev.source_device, ev.source_slot, rid)
        t.held_raises += int(was_held)
        if result.outcome == Outcome.DELIVERED:
            self._expect([result.delivery])
        elif result.outcome == Outcome.PENDING:
            t.pending_set += 1
        elif result.outcome == Outcome.BLOCKED:
            if result.fault.reason == FaultReason.NOT_PRESENT:
                t.blocked_not_present += 1
            else:
                t.blocked_source_mismatch += 1
        # The stimulus' intent, independent of the model's rules.
        blocked = result.outcome == Outcome.BLOCKED
        if ev.kind == RaiseKind.SPOOF:
            t.spoof_attempts += 1
            t.spoof_blocked += int(blocked)
            if not blocked:
                self._error(f"isolation: VF {ev.raiser} at {ev.source_device}/{ev.source_slot} "
                            f"raised VF {vf} vector {vector} and was not blocked")
        elif ev.kind == RaiseKind.ABSENT:
            t.absent_attempts += 1
            if not blocked or result.fault.reason != FaultReason.NOT_PRESENT:
                self._error(f"raise naming the absent entry VF {vf} vector {vector} was not "
                            f"blocked as NOT_PRESENT")
        elif blocked and result.fault.reason == FaultReason.SOURCE_MISMATCH:
            self._error(f"VF {vf} raised its own vector {vector} from its current location "
                        f"{ev.source_device}/{ev.source_slot} and was blocked")


# ---------------------------------------------------------------- the cycle-level bench
@dataclass
class BenchKnobs:
    out_backpressure: float = 0.1
    fault_backpressure: float = 0.6   # the control plane pops fault records slowly
    raise_idle: float = 0.0           # 0: a storm, an interrupt offered every cycle
    p_spoof: float = 0.04
    p_absent: float = 0.03


@dataclass
class _Script:
    steps: deque
    cmd: RemapCommand | None = None
    draining: int | None = None


class PortBench:
    """The bench at port level, one ``drive``/``edge`` pair per clock cycle."""

    def __init__(self, params: RemapParams, seed: int, script: list[Step],
                 knobs: BenchKnobs | None = None, raises: int | None = None):
        self.params = params
        self.knobs = knobs = knobs or BenchKnobs()
        self.rng = random.Random(seed)
        self.lay = layouts(params)
        self.sb = IrqScoreboard(params)
        self.traffic = Traffic(params, random.Random(self.rng.getrandbits(32)),
                               knobs.p_spoof, knobs.p_absent)
        self.script = _Script(deque(script))
        self.raises_left = raises
        self.cycle = 0
        self._raise: RaiseEvent | None = None
        self._cmd: RemapCommand | None = None
        self._read_due = False
        self._out_ready = 1
        self._fault_ready = 0
        self.last_out: dict[str, int] = {}

    # ---------------------------------------------------------------- ports
    def output_names(self) -> list[str]:
        return ["irq_in__ready", "ctl__ready", "irq_out__valid", "irq_out__payload",
                "fault__valid", "fault__payload", "rd_entry", "rd_pending", "busy",
                *HW_COUNTERS]

    def input_names(self) -> list[str]:
        return list(self.drive())

    def drive(self) -> dict[str, int]:
        return {
            "irq_in__valid": int(self._raise is not None),
            "irq_in__payload": pack(self.lay["irq_in"], self._raise.to_dict())
            if self._raise else 0,
            "ctl__valid": int(self._cmd is not None),
            "ctl__payload": pack(self.lay["ctl"], self._cmd.to_dict(self.params))
            if self._cmd else 0,
            "irq_out__ready": self._out_ready,
            "fault__ready": self._fault_ready,
        }

    def busy(self) -> bool:
        """Stimulus left: script steps, or (with a raise budget) raises."""
        return bool(self.script.steps or self._cmd or self._raise or self._raising())

    def _raising(self) -> bool:
        if self.raises_left is None:
            return bool(self.script.steps)
        return self.raises_left > 0

    def finish_mode(self) -> None:
        """No more backpressure: let every delivery and fault record out."""
        self.knobs = BenchKnobs(0.0, 0.0, 1.0, 0.0, 0.0)

    def edge(self, out: dict[str, int]) -> None:
        """Outputs sampled just before the edge that ends cycle ``self.cycle``."""
        c, sb = self.cycle, self.sb
        self.last_out = out
        if self._read_due:
            sb.read_result(c, unpack(self.lay["rd_entry"], out["rd_entry"]), out["rd_pending"])
            self._read_due = False
        if self._raise is not None and out["irq_in__ready"]:
            sb.raised(c, self._raise)
            self.traffic.sent(self._raise)
            self._raise = None
        if self._cmd is not None and out["ctl__ready"]:
            sb.command(c, self._cmd)
            self._read_due = (self._cmd.op == RemapOp.READ
                              and self.params.valid(self._cmd.vf, self._cmd.vector))
            self._cmd = None
        if out["irq_out__valid"] and self._out_ready:
            sb.delivered(c, unpack(self.lay["irq_out"], out["irq_out__payload"]))
        if out["fault__valid"] and self._fault_ready:
            sb.fault_popped(c, unpack(self.lay["fault"], out["fault__payload"]))
        self.cycle += 1
        self._plan()

    def _plan(self) -> None:
        rng, k = self.rng, self.knobs
        self._out_ready = int(rng.random() >= k.out_backpressure)
        self._fault_ready = int(rng.random() >= k.fault_backpressure)
        if self._cmd is None:
            self._cmd = self._next_command()
        if self._raise is None and self._raising() and rng.random() >= k.raise_idle:
            self._raise = self.traffic.next()
            if self._raise is not None and self.raises_left is not None:
                self.raises_left -= 1

    def _next_command(self) -> RemapCommand | None:
        steps = self.script.steps
        while steps and steps[0].due <= self.cycle:
            step = steps[0]
            if step.what == "cmd":
                steps.popleft()
                return step.cmd
            if step.what == "drain":
                # The VF's last interrupts from its old location must be executed before
                # RETARGET: nothing of it may wait on irq_in.
                if self.traffic.unsent[step.vf]:
                    return None
            elif step.what == "quiet":
                self.traffic.quiet.add(step.vf)
            elif step.what == "talk":
                self.traffic.quiet.discard(step.vf)
            elif step.what == "move":
                self.traffic.location[step.vf] = step.location
            steps.popleft()
        return None

    def idle_inputs(self) -> bool:
        return self._cmd is None and self._raise is None and not self.script.steps

    def hw_counters(self) -> dict[str, int]:
        return {name: self.last_out[name] for name in HW_COUNTERS}


__all__ = ["BENCH_PARAMS", "ODD_PARAMS", "ENV_PARAMS", "ENV_REPORT", "ENV_KNOBS",
           "HW_COUNTERS", "RaiseKind", "RaiseEvent", "Traffic", "Step", "control_script",
           "IrqTotals", "IrqScoreboard", "BenchKnobs", "PortBench", "build_remap",
           "params_to_env", "params_from_env", "layouts", "pack", "unpack", "holes",
           "open_vfs", "initial_locations"]
