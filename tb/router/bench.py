"""The router bench at cycle level, in plain Python: one object drives every input of the
router (behind ``RouterHarness``) and consumes every output, once per clock edge.

Both simulators use it unchanged: tests/hdl/test_router.py calls it from an amaranth.sim
testbench, tb/router/test_router.py from one cocotb coroutine. Per cycle the adapter

1. writes ``drive()`` (port name -> int) to the inputs,
2. samples the outputs just before the clock edge and passes them to ``edge()``.

``edge`` turns handshakes into events for the golden model (``model.router.GoldenRouter``,
or any *sink* with its five event methods, such as a pyuvm monitor that publishes them) in
the order the model requires (accept, dispatch, device response, response, control) and runs
the device models: in-order devices with a latency, a capacity and random backpressure,
whose answer is a function of (device, slot, request), so a request answered by the wrong
device or slot shows up in the data.
"""

from __future__ import annotations

import random
from collections import Counter, deque
from dataclasses import dataclass, field

from hdl.formats import bits_for
from hdl.router import (
    control_layout,
    device_request_layout,
    device_response_layout,
    request_layout,
    response_layout,
)
from model.router import (
    GoldenRouter,
    RouterCommand,
    RouterOp,
    RouterRequest,
    RouterResponse,
    RouterTable,
)
from model.state import OP_BITS
from tb.common.streams import pack, unpack

from . import RouterConfig

MASK32 = 0xFFFF_FFFF
SETTLE = 2  # cycles to run after busy() went False, before final_checks()
STATUS_PORTS = ("held", "placed", "vf_device", "vf_slot", "requests", "error_responses",
                "ctl_errors", "queued_total", "queued_requests")


def device_answer(device: int, slot: int, op: int, addr: int, data: int) -> tuple[int, int]:
    """What a test device answers: (data, error); error for addresses ending in 0b11111."""
    x = (device * 0x9E37_79B9 + slot * 0x85EB_CA6B + op * 0xC2B2_AE35 + addr * 0x27D4_EB2F
         + data) & MASK32
    x = ((x ^ (x >> 16)) * 0x7FEB_352D) & MASK32
    return x ^ (x >> 15), int(addr & 0x1F == 0x1F)


@dataclass(frozen=True)
class DeviceParams:
    latency: int = 4          # cycles from taking a request to offering its response
    capacity: int = 2         # requests inside the device at once
    backpressure: float = 0.2  # probability of ready low in a cycle with room
    resp_idle: float = 0.1    # probability of not offering a due response in a cycle


class DeviceModel:
    """An in-order device behind ``dev_req_<d>`` / ``dev_resp_<d>``."""

    def __init__(self, index: int, params: DeviceParams, rng: random.Random, vm_tag_bits: int):
        self.index, self.params, self.rng = index, params, rng
        self.vm_tag_bits = vm_tag_bits
        self.inside: deque[tuple[int, dict, int, int]] = deque()  # (due, resp, vf, tag)
        self.ready = 0
        self.offering: dict | None = None
        self.taken = 0

    def plan(self, cycle: int) -> None:
        """Choose this cycle's ready and response offer."""
        p = self.params
        self.ready = int(len(self.inside) < p.capacity and self.rng.random() >= p.backpressure)
        if self.offering is None and self.inside and self.inside[0][0] <= cycle:
            if self.rng.random() >= p.resp_idle:
                self.offering = self.inside[0][1]

    def take(self, cycle: int, req: dict) -> tuple[int, int]:
        """A request was transferred; returns (vf, vm tag) from its device tag."""
        vf, tag = req["tag"] >> self.vm_tag_bits, req["tag"] & ((1 << self.vm_tag_bits) - 1)
        data, error = device_answer(self.index, req["slot"], req["op"], req["addr"],
                                    req["data"])
        resp = {"slot": req["slot"], "tag": req["tag"], "data": data, "error": error}
        self.inside.append((cycle + self.params.latency, resp, vf, tag))
        self.taken += 1
        return vf, tag

    def answered(self) -> tuple[int, int, dict]:
        _, resp, vf, tag = self.inside.popleft()
        self.offering = None
        return vf, tag, resp


@dataclass
class FlowStats:
    """Does traffic of VFs that are not held keep flowing while others are held?"""
    cycles: int = 0
    held_cycles: int = 0             # cycles with at least one VF held
    dispatches: int = 0
    free_dispatches_while_held: int = 0  # dispatches of non-held VFs while some VF is held
    windows: list[dict] = field(default_factory=list)  # one per HOLD..RELEASE of a VF
    max_held_at_once: int = 0
    req_stall_cycles: int = 0        # req offered and not taken
    queue_full_stalls: int = 0       # ... with a known VF at the head: its queue was full

    def report(self) -> dict:
        windows = self.windows
        return {
            "cycles": self.cycles, "held_cycles": self.held_cycles,
            "dispatches": self.dispatches,
            "free_dispatches_while_held": self.free_dispatches_while_held,
            "hold_windows": len(windows), "max_held_at_once": self.max_held_at_once,
            "min_other_dispatches_per_window": min((w["others"] for w in windows), default=0),
            "req_stall_cycles": self.req_stall_cycles,
            "queue_full_stalls": self.queue_full_stalls,
        }


class RouterBench:
    """Drives the router harness for one test; see the module docstring.

    ``requests`` and ``commands`` are the stimulus queues: a request is offered (after
    random idle cycles, not before ``first_request_cycle``) as soon as it is first in line;
    a command ``(cycle, cmd)`` is offered from ``cycle`` on. With ``quiesce_prob`` a HOLD
    also quiesces the VF's slot (``quiesce_<d>`` of the harness) from the cycle it is
    offered, as the migration engine quiesces the source slot, until the RELEASE; without,
    a held VF's slot stays open, so a router that dispatched a held VF's request would be
    seen doing it.

    ``sink`` (kept as ``self.model``) receives the events: by default a fresh
    ``GoldenRouter``; the pyuvm bench puts its monitor there, which publishes them.
    The bench keeps its own copy of the table (``self.table``) for quiesce, flow statistics
    and the per-cycle check of the status ports (held, placed, locations, ``requests``,
    ``ctl_errors``); ``last_out`` holds the outputs sampled at the last edge.
    """

    def __init__(self, cfg: RouterConfig, seed: int, *, idle_prob: float = 0.2,
                 resp_backpressure: float = 0.2, devices: list[DeviceParams] | None = None,
                 quiesce_prob: float = 0.5, check_status: bool = True, sink=None,
                 first_request_cycle: int = 0):
        self.cfg = cfg
        self.check_status = check_status
        self.first_request_cycle = first_request_cycle
        self.rng = random.Random(seed)
        self.idle_prob, self.resp_backpressure = idle_prob, resp_backpressure
        self.quiesce_prob = quiesce_prob
        max_slots = max(cfg.slots_per_device)
        dev_tag_bits = cfg.tag_bits + cfg.index_bits
        self.req_layout = request_layout(cfg.vf_bits, cfg.addr_bits, cfg.tag_bits)
        self.resp_layout = response_layout(cfg.vf_bits, cfg.tag_bits)
        self.ctl_layout = control_layout(cfg.vf_bits, cfg.n_devices, max_slots)
        self.dev_req_layouts = [device_request_layout(s, cfg.addr_bits, dev_tag_bits)
                                for s in cfg.slots_per_device]
        self.dev_resp_layouts = [device_response_layout(s, dev_tag_bits)
                                 for s in cfg.slots_per_device]
        params = devices or [DeviceParams()] * cfg.n_devices
        self.devices = [DeviceModel(d, params[d], random.Random(self.rng.getrandbits(32)),
                                    cfg.tag_bits) for d in range(cfg.n_devices)]
        self.model = sink if sink is not None else GoldenRouter(cfg.n_vfs, cfg.slots_per_device,
                                                                cfg.tag_bits)
        self.table = RouterTable(cfg.n_vfs, cfg.slots_per_device)
        self.accepted = self.responded = self.refused = 0
        self.last_out: dict[str, int] = {}
        self.problems: list[str] = []  # status-port mismatches
        self.requests: deque[RouterRequest] = deque()
        self.commands: deque[tuple[int, RouterCommand]] = deque()
        self.cycle = 0
        self.flow = FlowStats()
        self._req: RouterRequest | None = None
        self._ctl: RouterCommand | None = None
        self._resp_ready = 1
        self._quiesce = [Counter() for _ in range(cfg.n_devices)]  # slot -> holders
        self._quiesced_by: dict[int, tuple[int, int]] = {}
        self._open_windows: dict[int, dict] = {}
        self._free_dispatches = 0
        self._plan()

    # ---------------------------------------------------------------- port lists
    def output_names(self) -> list[str]:
        names = ["req__ready", "resp__valid", "resp__payload", "ctl__ready"]
        for d in range(self.cfg.n_devices):
            names += [f"dev_req_{d}__valid", f"dev_req_{d}__payload", f"dev_resp_{d}__ready"]
        if self.check_status:
            names += list(STATUS_PORTS)
        return names

    def input_names(self) -> list[str]:
        return list(self.drive())

    # ---------------------------------------------------------------- per cycle
    def drive(self) -> dict[str, int]:
        values = {
            "req__valid": int(self._req is not None),
            "req__payload": pack(self.req_layout, self._req.to_dict()) if self._req else 0,
            "resp__ready": self._resp_ready,
            "ctl__valid": int(self._ctl is not None),
            "ctl__payload": pack(self.ctl_layout, self._ctl.to_dict()) if self._ctl else 0,
        }
        for d, dev in enumerate(self.devices):
            offer = dev.offering
            values[f"dev_req_{d}__ready"] = dev.ready
            values[f"dev_resp_{d}__valid"] = int(offer is not None)
            values[f"dev_resp_{d}__payload"] = (pack(self.dev_resp_layouts[d], offer)
                                                if offer else 0)
            values[f"quiesce_{d}"] = sum(1 << s for s, n in self._quiesce[d].items() if n)
        return values

    def edge(self, out: dict[str, int]) -> None:
        """Handshakes of the cycle ending now (``out`` sampled just before the edge)."""
        cycle, model, table = self.cycle, self.model, self.table
        self.last_out = out
        if self.check_status:
            self._check_status(out)
        if self._req is not None:
            if out["req__ready"]:
                model.accept(cycle, self._req)
                self.accepted += 1
                self._req = None
            else:
                self.flow.req_stall_cycles += 1
                self.flow.queue_full_stalls += table.known(self._req.vf)
        held_now = {v for v in range(self.cfg.n_vfs) if table.held(v)}
        for d, dev in enumerate(self.devices):
            if out[f"dev_req_{d}__valid"] and dev.ready:
                req = unpack(self.dev_req_layouts[d], out[f"dev_req_{d}__payload"])
                vf, tag = dev.take(cycle, req)
                model.dispatch(cycle, d, req["slot"], vf, req["op"], req["addr"], req["data"],
                               tag)
                self.flow.dispatches += 1
                if vf not in held_now:
                    self._free_dispatches += 1
                    self.flow.free_dispatches_while_held += bool(held_now)
        for d, dev in enumerate(self.devices):
            if dev.offering is not None and out[f"dev_resp_{d}__ready"]:
                vf, tag, resp = dev.answered()
                model.device_response(cycle, d, vf, tag, resp["data"], resp["error"])
        if self._resp_ready and out["resp__valid"]:
            f = unpack(self.resp_layout, out["resp__payload"])
            resp = RouterResponse(f["vf"], f["tag"], f["data"], f["error"])
            model.response(cycle, resp)
            self.responded += 1
        if self._ctl is not None and out["ctl__ready"]:
            self._control(cycle, self._ctl)
            self._ctl = None
        self.flow.cycles += 1
        self.flow.held_cycles += bool(held_now)
        self.flow.max_held_at_once = max(self.flow.max_held_at_once, len(held_now))
        self.cycle += 1
        self._plan()

    def _check_status(self, out: dict[str, int]) -> None:
        """The status ports show the table and counters as of the start of this cycle."""
        cfg, table = self.cfg, self.table
        dev_w = bits_for(cfg.n_devices)
        slot_w = bits_for(max(cfg.slots_per_device))
        got = {
            "held": out["held"], "placed": out["placed"],
            "locations": [((out["vf_device"] >> (v * dev_w)) & ((1 << dev_w) - 1),
                           (out["vf_slot"] >> (v * slot_w)) & ((1 << slot_w) - 1))
                          if out["placed"] >> v & 1 else None for v in range(cfg.n_vfs)],
            "requests": out["requests"], "ctl_errors": out["ctl_errors"],
        }
        want = {
            "held": sum(1 << v for v in range(cfg.n_vfs) if table.held(v)),
            "placed": sum(1 << v for v in range(cfg.n_vfs) if table.location(v) is not None),
            "locations": [table.location(v) for v in range(cfg.n_vfs)],
            "requests": self.accepted, "ctl_errors": self.refused,
        }
        for key, value in want.items():
            if got[key] != value and len(self.problems) < 20:
                self.problems.append(f"cycle {self.cycle}: status {key} reads {got[key]}, "
                                     f"expected {value}")

    def _control(self, cycle: int, cmd: RouterCommand) -> None:
        table = self.table
        was_held = table.held(cmd.vf)
        self.refused += not table.apply(cmd)
        self.model.control(cycle, cmd)
        now_held = table.held(cmd.vf)
        if now_held and not was_held:
            self._open_windows[cmd.vf] = {"vf": cmd.vf, "start": cycle,
                                          "free_at_start": self._free_dispatches}
        elif was_held and not now_held:
            window = self._open_windows.pop(cmd.vf)
            window["end"] = cycle
            window["others"] = self._free_dispatches - window.pop("free_at_start")
            self.flow.windows.append(window)
            where = self._quiesced_by.pop(cmd.vf, None)
            if where is not None:
                self._quiesce[where[0]][where[1]] -= 1

    def final_checks(self, totals=None) -> list[str]:
        """After the bench went idle and ran ``SETTLE`` more cycles (so the sampled counters
        include the last handshakes): status problems, and the counters at rest (queues
        empty; with the model's ``totals``, ``error_responses`` and ``queued_requests``)."""
        out, problems = self.last_out, list(self.problems)
        if out.get("queued_total", 0) != 0:
            problems.append(f"queued_total {out['queued_total']} at rest")
        if totals is not None and self.check_status:
            if out["error_responses"] != totals.router_errors:
                problems.append(f"error_responses {out['error_responses']}, the model counts "
                                f"{totals.router_errors} router errors")
            if out["queued_requests"] > totals.requests:
                problems.append(f"queued_requests {out['queued_requests']} > requests "
                                f"{totals.requests}")
        return problems

    def _plan(self) -> None:
        """Choose the inputs of the coming cycle."""
        cycle, rng = self.cycle, self.rng
        if (self._req is None and self.requests and cycle >= self.first_request_cycle
                and not (self.idle_prob and rng.random() < self.idle_prob)):
            self._req = self.requests.popleft()
        if self._ctl is None and self.commands and self.commands[0][0] <= cycle:
            _, self._ctl = self.commands.popleft()
            cmd, table = self._ctl, self.table
            if (cmd.op == RouterOp.HOLD and table.known(cmd.vf) and not table.held(cmd.vf)
                    and cmd.vf not in self._quiesced_by and rng.random() < self.quiesce_prob):
                where = table.location(cmd.vf)
                if where is not None:
                    self._quiesced_by[cmd.vf] = where
                    self._quiesce[where[0]][where[1]] += 1
        if self.resp_backpressure:
            self._resp_ready = int(rng.random() >= self.resp_backpressure)
        for dev in self.devices:
            dev.plan(cycle)

    # ---------------------------------------------------------------- state
    def not_accepted(self, vf: int) -> int:
        """Requests of ``vf`` still in ``requests`` or being offered."""
        return (sum(r.vf == vf for r in self.requests)
                + int(self._req is not None and self._req.vf == vf))

    def busy_control(self) -> bool:
        """A command is being offered on ``ctl``."""
        return self._ctl is not None

    def busy(self) -> bool:
        """Stimulus left to send, or requests still unanswered."""
        return bool(self.requests or self._req or self.commands or self._ctl
                    or self.accepted != self.responded or any(d.inside for d in self.devices))


# -------------------------------------------------------------------- stimulus
class Traffic:
    """Random VM requests: per-VF tags count up; ``unknown_prob`` of them name an unknown id
    (when ``vf_bits`` can express one)."""

    def __init__(self, cfg: RouterConfig, rng: random.Random, unknown_prob: float = 0.03,
                 vfs: list[int] | None = None, weights: list[float] | None = None):
        self.cfg, self.rng = cfg, rng
        self.unknown_prob = unknown_prob if (1 << cfg.vf_bits) > cfg.n_vfs else 0.0
        self.vfs = vfs if vfs is not None else list(range(cfg.n_vfs))
        self.weights = weights
        self.tags: Counter = Counter()

    def pick_vf(self) -> int:
        cfg, rng = self.cfg, self.rng
        if self.unknown_prob and rng.random() < self.unknown_prob:
            return rng.randrange(cfg.n_vfs, 1 << cfg.vf_bits)
        return rng.choices(self.vfs, self.weights)[0]

    def request(self, vf: int | None = None) -> RouterRequest:
        cfg, rng = self.cfg, self.rng
        if vf is None:
            vf = self.pick_vf()
        tag = self.tags[vf] % (1 << cfg.tag_bits)
        self.tags[vf] += 1
        return RouterRequest(vf, rng.randrange(1 << OP_BITS), rng.getrandbits(cfg.addr_bits),
                             rng.getrandbits(32), tag)

    def requests(self, count: int) -> list[RouterRequest]:
        return [self.request() for _ in range(count)]


def random_location(cfg: RouterConfig, rng: random.Random) -> tuple[int, int]:
    device = rng.randrange(cfg.n_devices)
    return device, rng.randrange(cfg.slots_per_device[device])


def placement_commands(cfg: RouterConfig, unplaced: tuple[int, ...] = ()) -> list[RouterCommand]:
    """PLACE every VF (except ``unplaced``) spread over the devices' slots."""
    cmds, d, s = [], 0, 0
    for vf in range(cfg.n_vfs):
        if vf not in unplaced:
            cmds.append(RouterCommand(RouterOp.PLACE, vf, d, s))
        s += 1
        if s == cfg.slots_per_device[d]:
            d, s = (d + 1) % cfg.n_devices, 0
    return cmds


def hold_windows(cfg: RouterConfig, rng: random.Random, vfs: list[int], start: int, end: int,
                 holds_per_vf: int = 2, min_len: int = 20, max_len: int = 200,
                 relocate_prob: float = 0.8) -> list[tuple[int, RouterCommand]]:
    """HOLD/RELEASE pairs for ``vfs`` in [start, end): windows of different VFs overlap;
    a RELEASE moves the VF to a random location with ``relocate_prob``, else back to where
    it was (an abort). Sorted by cycle."""
    events: list[tuple[int, RouterCommand]] = []
    where = {cmd.vf: (cmd.device, cmd.slot) for cmd in placement_commands(cfg)}
    span = max(1, (end - start) // holds_per_vf)
    for vf in vfs:
        for k in range(holds_per_vf):
            lo = start + k * span
            length = rng.randint(min_len, max(min_len, min(max_len, span - 2)))
            begin = rng.randint(lo, max(lo, lo + span - length - 1))
            target = (random_location(cfg, rng) if rng.random() < relocate_prob
                      else where.get(vf, (0, 0)))
            events.append((begin, RouterCommand(RouterOp.HOLD, vf)))
            events.append((begin + length, RouterCommand(RouterOp.RELEASE, vf, *target)))
    events.sort(key=lambda e: e[0])
    return events


def table_churn(cfg: RouterConfig, rng: random.Random, vfs: list[int], start: int, end: int,
                count: int) -> list[tuple[int, RouterCommand]]:
    """Random PLACE / UNPLACE on ``vfs`` (their requests meet unplaced windows: router
    errors; and moves while not held), and invalid commands (refused), at least one."""
    events = []
    for _ in range(count):
        cycle = rng.randrange(start, end)
        vf = rng.choice(vfs)
        kind = rng.random()
        if kind < 0.45:
            events.append((cycle, RouterCommand(RouterOp.UNPLACE, vf)))
        elif kind < 0.9:
            events.append((cycle, RouterCommand(RouterOp.PLACE, vf,
                                                *random_location(cfg, rng))))
        elif kind < 0.95:   # a slot that does not exist: refused
            device = rng.randrange(cfg.n_devices)
            slots = cfg.slots_per_device[device]
            if slots < 1 << bits_for(max(cfg.slots_per_device)):  # encodable in `slot`
                events.append((cycle, RouterCommand(RouterOp.PLACE, vf, device, slots)))
        else:               # an unknown VF id: refused
            if (1 << cfg.vf_bits) > cfg.n_vfs:
                events.append((cycle, RouterCommand(RouterOp.HOLD, cfg.n_vfs)))
    # One refused command for sure: a device that does not exist (when encodable), else
    # RELEASE of an unknown VF id (when encodable).
    cycle = rng.randrange(start, end)
    if cfg.n_devices < 1 << bits_for(cfg.n_devices):
        events.append((cycle, RouterCommand(RouterOp.PLACE, rng.choice(vfs), cfg.n_devices, 0)))
    elif (1 << cfg.vf_bits) > cfg.n_vfs:
        events.append((cycle, RouterCommand(RouterOp.RELEASE, cfg.n_vfs, 0, 0)))
    events.sort(key=lambda e: e[0])
    return events


def merge_schedules(*schedules) -> list[tuple[int, RouterCommand]]:
    merged = [e for s in schedules for e in s]
    merged.sort(key=lambda e: e[0])
    return merged


def release_all(cfg: RouterConfig, cycle: int) -> list[tuple[int, RouterCommand]]:
    """At the end of a test: RELEASE every VF at its ``placement_commands`` location (which
    also places an unplaced VF), so every queue drains."""
    return [(cycle, RouterCommand(RouterOp.RELEASE, cmd.vf, cmd.device, cmd.slot))
            for cmd in placement_commands(cfg)]


__all__ = ["RouterBench", "DeviceModel", "DeviceParams", "FlowStats", "Traffic",
           "device_answer", "placement_commands", "hold_windows", "table_churn",
           "merge_schedules", "release_all", "random_location"]
