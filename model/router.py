"""Golden model of the VF router (docs/design.md `router`, issue 3 item 2).

The router is the VF abstraction the VM sees: requests name a stable VF id, the router's
table maps it to (device, slot), and a *held* VF's requests wait in order until the VF is
released (usually at a new location). This module holds

- ``RouterOp`` / ``RouterCommand``: the control port's commands and their encoding;
- ``RouterTable``: the VF table and the exact effect (or refusal) of every command;
- ``GoldenRouter``: the reference the scoreboards use. It is fed cycle-stamped events seen
  on the router's ports (request accepted, request handed to a device, device response,
  response to the VM, command accepted) and checks every rule the router promises:

  * every accepted request gets exactly one response, with its VF id and tag, and the
    responses of one VF come in the order its requests were accepted;
  * a request reaches a device only in order within its VF, never while its VF is held,
    and only at the (device, slot) the table names in that cycle;
  * a response carries what the device answered for exactly that request;
  * a router error (error=1, data=0, no device involved) is legal only for a VF id that is
    unknown, or that was neither placed nor held in some cycle between the request's
    acceptance and its response.

When a queued request leaves its queue is the router's choice (arbitration), so the model
does not predict it; it checks that the choice was legal when it was made.

Timing convention: a command accepted in cycle ``c`` changes the table for cycles ``c+1``
on; a request accepted or dispatched in cycle ``c`` sees the table of cycle ``c``.
Within one cycle, feed events in the order accept, dispatch, device_response, response,
control (``RouterBench`` in tb/router does).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum

CTL_OP_BITS = 2


class RouterOp(IntEnum):
    """Control-port commands (``ctl.payload.op``)."""
    PLACE = 0     # table[vf] = (device, slot), placed; `held` unchanged
    UNPLACE = 1   # not placed: new requests get an error response (unless held)
    HOLD = 2      # requests wait in the VF's queue, in order; nothing is dispatched
    RELEASE = 3   # table[vf] = (device, slot), placed, not held: the queue drains there


@dataclass(frozen=True)
class RouterCommand:
    op: RouterOp
    vf: int
    device: int = 0
    slot: int = 0

    def to_dict(self) -> dict[str, int]:
        return {"op": int(self.op), "vf": self.vf, "device": self.device, "slot": self.slot}


@dataclass(frozen=True)
class RouterRequest:
    vf: int
    op: int
    addr: int
    data: int
    tag: int

    def to_dict(self) -> dict[str, int]:
        return {"vf": self.vf, "op": self.op, "addr": self.addr, "data": self.data,
                "tag": self.tag}


@dataclass(frozen=True)
class RouterResponse:
    vf: int
    tag: int
    data: int
    error: int


@dataclass
class VFEntry:
    placed: bool = False
    device: int = 0
    slot: int = 0
    held: bool = False


class RouterTable:
    """VF id -> (placed, device, slot) + held, with the control port's semantics.

    A command naming a VF id >= ``n_vfs``, or (PLACE/RELEASE) a device or slot that does not
    exist, is refused: nothing changes and ``apply`` returns False (the HDL counts it in
    ``ctl_errors``).
    """

    def __init__(self, n_vfs: int, slots_per_device: Sequence[int],
                 initial: Sequence[tuple[int, int] | None] | None = None):
        self.n_vfs = n_vfs
        self.slots_per_device = tuple(slots_per_device)
        self.entries = [VFEntry() for _ in range(n_vfs)]
        for vf, where in enumerate(initial or ()):
            if where is not None:
                self.entries[vf] = VFEntry(True, where[0], where[1], False)

    def known(self, vf: int) -> bool:
        return 0 <= vf < self.n_vfs

    def valid_location(self, device: int, slot: int) -> bool:
        devices = self.slots_per_device
        return 0 <= device < len(devices) and 0 <= slot < devices[device]

    def apply(self, cmd: RouterCommand) -> bool:
        if not self.known(cmd.vf):
            return False
        entry = self.entries[cmd.vf]
        op = RouterOp(cmd.op)
        if op in (RouterOp.PLACE, RouterOp.RELEASE):
            if not self.valid_location(cmd.device, cmd.slot):
                return False
            entry.placed, entry.device, entry.slot = True, cmd.device, cmd.slot
            if op == RouterOp.RELEASE:
                entry.held = False
        elif op == RouterOp.UNPLACE:
            entry.placed = False
        else:
            entry.held = True
        return True

    def held(self, vf: int) -> bool:
        return self.known(vf) and self.entries[vf].held

    def location(self, vf: int) -> tuple[int, int] | None:
        """(device, slot) a request of ``vf`` dispatched now goes to, or None."""
        if not self.known(vf) or not self.entries[vf].placed:
            return None
        return self.entries[vf].device, self.entries[vf].slot

    def error_now(self, vf: int) -> bool:
        """A request of ``vf`` may be answered with a router error in this state."""
        return not self.known(vf) or not (self.entries[vf].placed or self.entries[vf].held)


@dataclass
class _Pending:
    """One accepted request, followed until its response."""
    req: RouterRequest
    accepted: int                  # cycle
    held_at_accept: bool
    dispatched: int | None = None  # cycle handed to a device
    device: int | None = None
    slot: int | None = None
    device_answer: tuple[int, int] | None = None  # (data, error) from the device


@dataclass
class RouterTotals:
    requests: int = 0
    responses: int = 0
    dispatched: list[int] = field(default_factory=list)   # per device
    router_errors: int = 0       # error responses made by the router (unknown/unplaced)
    device_errors: int = 0       # device responses with error=1, passed through
    commands: int = 0
    refused_commands: int = 0
    held_dispatches: int = 0     # requests accepted while their VF was held
    mismatches: int = 0          # rule violations seen (== len(GoldenRouter.messages))
    lost: int = 0                # requests without a response at finish()

    def to_dict(self) -> dict:
        return dict(self.__dict__)


class GoldenRouter:
    """Reference model and scoreboard core of the router (see the module docstring).

    ``messages`` collects one line per violation; ``finish()`` adds the unanswered requests
    and returns the totals. ``max_messages`` caps the list (the count stays exact).
    """

    def __init__(self, n_vfs: int, slots_per_device: Sequence[int], tag_bits: int,
                 initial: Sequence[tuple[int, int] | None] | None = None,
                 max_messages: int = 50):
        self.table = RouterTable(n_vfs, slots_per_device, initial)
        self.n_vfs, self.tag_bits = n_vfs, tag_bits
        self.n_devices = len(self.table.slots_per_device)
        self.totals = RouterTotals(dispatched=[0] * self.n_devices)
        self.messages: list[str] = []
        self.max_messages = max_messages
        # Per VF id (unknown ids included): accepted requests in order, until answered.
        self._open: dict[int, deque[_Pending]] = {}
        # Per VF: accepted requests not yet dispatched (a subset of _open, same order).
        self._undispatched: dict[int, deque[_Pending]] = {}
        # Per (device, VF): dispatched requests the device has not answered, in order.
        self._at_device: dict[tuple[int, int], deque[_Pending]] = {}
        # Per known VF: cycles [start, end] in which a router error was legal (end None: open).
        self._error_windows: list[list[list]] = []
        for vf in range(n_vfs):
            start = 0 if self.table.error_now(vf) else None
            self._error_windows.append([[start, None]] if start is not None else [])
        self.last_cycle = 0

    # ------------------------------------------------------------------ helpers
    def fail(self, text: str) -> None:
        """Record one violation (the bench reports its own checks here too)."""
        self.totals.mismatches += 1
        if len(self.messages) < self.max_messages:
            self.messages.append(text)

    def _time(self, cycle: int) -> None:
        if cycle < self.last_cycle:
            self.fail(f"cycle {cycle}: event out of time order (after cycle {self.last_cycle})")
        self.last_cycle = max(self.last_cycle, cycle)

    def outstanding(self, vf: int | None = None) -> int:
        """Accepted requests not yet answered (of one VF id, or all)."""
        if vf is not None:
            return len(self._open.get(vf, ()))
        return sum(len(q) for q in self._open.values())

    def undispatched(self, vf: int) -> int:
        return len(self._undispatched.get(vf, ()))

    # ------------------------------------------------------------------ events
    def accept(self, cycle: int, req: RouterRequest) -> None:
        """``req`` was accepted on the request port in ``cycle``."""
        self._time(cycle)
        self.totals.requests += 1
        held = self.table.held(req.vf)
        self.totals.held_dispatches += held
        pending = _Pending(req, cycle, held)
        self._open.setdefault(req.vf, deque()).append(pending)
        if self.table.known(req.vf):
            self._undispatched.setdefault(req.vf, deque()).append(pending)

    def dispatch(self, cycle: int, device: int, slot: int, vf: int, op: int, addr: int,
                 data: int, tag: int) -> None:
        """A request (VF id recovered from the device tag) was taken by ``device``."""
        self._time(cycle)
        what = f"cycle {cycle}: device {device} slot {slot} got VF {vf} tag {tag}"
        queue = self._undispatched.get(vf)
        if not queue:
            self.fail(f"{what}: no such request is waiting (duplicate or invented)")
            return
        pending = queue.popleft()
        got = RouterRequest(vf, op, addr, data, tag)
        if got != pending.req:
            self.fail(f"{what}: {got} is not the VF's oldest waiting request {pending.req} "
                       f"(order, or payload corrupted)")
        if self.table.held(vf):
            self.fail(f"{what}: the VF is held")
        where = self.table.location(vf)
        if where != (device, slot):
            self.fail(f"{what}: the table places the VF at {where}")
        pending.dispatched, pending.device, pending.slot = cycle, device, slot
        self.totals.dispatched[device] += 1
        self._at_device.setdefault((device, vf), deque()).append(pending)

    def device_response(self, cycle: int, device: int, vf: int, tag: int, data: int,
                        error: int) -> None:
        """``device`` handed a response for VF ``vf`` (from its tag) to the router."""
        self._time(cycle)
        queue = self._at_device.get((device, vf))
        if not queue:
            self.fail(f"cycle {cycle}: device {device} answered VF {vf} tag {tag} without a "
                       f"request (test device bug)")
            return
        pending = queue.popleft()
        if pending.req.tag != tag:
            self.fail(f"cycle {cycle}: device {device} answered VF {vf} tag {tag}, expected "
                       f"tag {pending.req.tag} (test device bug)")
        pending.device_answer = (data, error)

    def response(self, cycle: int, resp: RouterResponse) -> None:
        """``resp`` was taken from the response port in ``cycle``."""
        self._time(cycle)
        what = f"cycle {cycle}: response {resp}"
        queue = self._open.get(resp.vf)
        if not queue:
            self.fail(f"{what}: the VF has no request waiting for a response "
                       f"(duplicate, or delivered to the wrong VF)")
            return
        pending = queue.popleft()
        self.totals.responses += 1
        if resp.tag != pending.req.tag:
            self.fail(f"{what}: expected tag {pending.req.tag} of {pending.req} (per-VF order, "
                       f"or delivered to the wrong VF)")
        if pending.dispatched is not None:
            if pending.device_answer is None:
                self.fail(f"{what}: {pending.req} is still inside device {pending.device}")
            elif (resp.data, resp.error) != pending.device_answer:
                self.fail(f"{what}: device {pending.device} answered "
                           f"(data, error)={pending.device_answer}")
            self.totals.device_errors += resp.error
            return
        # Never reached a device: the only legal answer is a router error.
        if self.table.known(resp.vf):
            undispatched = self._undispatched[resp.vf]
            if undispatched and undispatched[0] is pending:
                undispatched.popleft()
            else:
                self.fail(f"{what}: bookkeeping: {pending.req} not at the head of its queue")
        self.totals.router_errors += 1
        if (resp.data, resp.error) != (0, 1):
            self.fail(f"{what}: {pending.req} never reached a device, so only a router error "
                       f"(data=0, error=1) is possible")
        elif self.table.known(resp.vf) and not self._error_was_legal(resp.vf, pending.accepted,
                                                                       cycle):
            self.fail(f"{what}: router error for VF {resp.vf}, which was placed or held in "
                       f"every cycle from {pending.accepted} to {cycle}")

    def _error_was_legal(self, vf: int, first: int, response_cycle: int) -> bool:
        # The error was made in some cycle in [first, response_cycle - 1].
        last = response_cycle - 1
        return any(start <= last and (end is None or end >= first)
                   for start, end in self._error_windows[vf])

    def control(self, cycle: int, cmd: RouterCommand) -> bool:
        """``cmd`` was accepted on the control port in ``cycle``; returns its validity."""
        self._time(cycle)
        self.totals.commands += 1
        known = self.table.known(cmd.vf)
        before = known and self.table.error_now(cmd.vf)
        ok = self.table.apply(cmd)
        self.totals.refused_commands += not ok
        after = known and self.table.error_now(cmd.vf)
        if known and before != after:
            windows = self._error_windows[cmd.vf]
            if after:
                windows.append([cycle + 1, None])
            else:
                windows[-1][1] = cycle
        return ok

    def finish(self) -> RouterTotals:
        """Count every request still unanswered as lost (once) and return the totals."""
        lost = [p for q in self._open.values() for p in q]
        for pending in lost[:10]:
            where = ("never dispatched" if pending.dispatched is None else
                     f"dispatched to device {pending.device} slot {pending.slot} in cycle "
                     f"{pending.dispatched}")
            self.fail(f"lost: {pending.req} accepted in cycle {pending.accepted}, {where}")
        self.totals.mismatches += max(0, len(lost) - 10)
        self.totals.lost = len(lost)
        for queue in self._open.values():
            queue.clear()
        return self.totals


__all__ = ["CTL_OP_BITS", "RouterOp", "RouterCommand", "RouterRequest", "RouterResponse",
           "VFEntry", "RouterTable", "RouterTotals", "GoldenRouter"]
