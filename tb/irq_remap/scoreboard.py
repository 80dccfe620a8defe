"""The interrupt scoreboard of the irq_remap bench, fed by ``model.irq_remap.GoldenIrqRemap``:
every raise is delivered exactly once, blocked, or left pending, in order."""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass

from model.irq_remap import (
    FaultReason,
    FaultRecord,
    GoldenIrqRemap,
    Outcome,
    RemapCommand,
    RemapEntry,
    RemapOp,
    RemapParams,
)

from .stimulus import RaiseEvent, RaiseKind


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
            at, rid, ev = self._inflight.popleft()
            self._execute(at, rid, ev)

    def _execute(self, cycle: int, rid: int, ev: RaiseEvent) -> None:
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
                self._error(f"cycle {cycle}: isolation: VF {ev.raiser} at {ev.source_device}/"
                            f"{ev.source_slot} raised VF {vf} vector {vector} and was not "
                            f"blocked")
        elif ev.kind == RaiseKind.ABSENT:
            t.absent_attempts += 1
            if not blocked or result.fault.reason != FaultReason.NOT_PRESENT:
                self._error(f"raise naming the absent entry VF {vf} vector {vector} was not "
                            f"blocked as NOT_PRESENT")
        elif blocked and result.fault.reason == FaultReason.SOURCE_MISMATCH:
            self._error(f"VF {vf} raised its own vector {vector} from its current location "
                        f"{ev.source_device}/{ev.source_slot} and was blocked")


# ---------------------------------------------------------------- the cycle-level bench
