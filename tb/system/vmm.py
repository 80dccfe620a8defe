"""The VMM model: drives VF migrations through the VFIO-style registers (model/regmap.py).

The VMM reaches the registers over AXI4-Lite (``control_bus``: tb/common/axil.py's agent on
the system's ``axil`` port).  ``Vmm`` walks a migration the way a VFIO driver would:

1. REQUESTED_STATE = PRE_COPY, wait until not busy (an error here: the target refused);
2. wait for STATUS.converged while traffic keeps running (rounds run in hardware);
3. REQUESTED_STATE = STOP_COPY (the VF is held, the residual sent), then STOP
   (STATUS.ready_to_commit);
4. CONTROL.COMMIT, wait until LOCATION.device flips and DEVICE_STATE is RUNNING, or an error
   (ABORTED: rolled back).

Stop-copy only starts at step 3 straight from RUNNING; an abort asks for RUNNING from
PRE_COPY after at least one dirty round.  Every poll has a timeout whose message names the
VF, the register and the last value read.  The register checks the VMM makes on the way
(state unchanged after an invalid request, location after commit/abort, migration counters)
are collected in ``problems``; the test fails on any.

The scenario itself is a list of ``MigrationStep``s (``default_plan`` or ``parse_plan``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from cocotb.triggers import Lock, RisingEdge, Timer

from model.config import Device, SystemConfig
from model.irq_remap import RemapEntry, RemapOp
from model.regmap import (
    CONTROL_CLEAR_ERROR,
    CONTROL_COMMIT,
    GLOBAL,
    IRTE_CMD_BUSY,
    IRTE_CMD_REFUSED,
    IRTE_DATA_PENDING,
    LINK_STAT_NAMES,
    LOCATION_MIGRATING,
    STATUS_BUSY,
    STATUS_CONVERGED,
    STATUS_ERROR,
    STATUS_READY_TO_COMMIT,
    STATUS_REASON,
    DowntimePhase,
    ErrorCode,
    irq_fault_fields,
    irte_cmd,
    link_reg,
    vf_reg,
)
from model.vfio import DeviceState
from tb.common.axil import AxilCsrBus, AxilMaster

from .traffic import irte_entry

CLOCK_NS = 10
MODES = ("pre", "stop", "abort", "invalid", "reject")
EXPECTED = {"abort": "aborted", "reject": "rejected"}   # by mode; else "committed"


# ---------------------------------------------------------------- the scenario plan
@dataclass(frozen=True)
class MigrationStep:
    """One VMM action: ``pre`` (pre-copy then commit), ``stop`` (stop-copy only then commit),
    ``abort`` (pre-copy, abort after ``abort_after_rounds`` dirty rounds), ``invalid`` (an
    illegal VFIO request on a running VF), ``reject`` (pre-copy to a device with no free
    slot: MIG_REJECT, the VF stays).  ``probe`` adds an illegal STOP_COPY -> PRE_COPY
    request in the middle of a migration, which must change nothing. ``concurrent``: starts
    together with the step before it (written ``+`` in a plan), so migrations overlap."""
    vf: int
    mode: str
    probe: bool = False
    abort_after_rounds: int = 1
    concurrent: bool = False

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"migration mode {self.mode!r} is not one of {', '.join(MODES)}")

    def __str__(self) -> str:
        return f"{self.vf}:{self.mode}" + (":probe" if self.probe else "")


def parse_plan(text: str) -> list[MigrationStep]:
    """``"0:pre,1:abort,0:stop:probe,2:invalid,1:pre+5:pre"`` -> steps (``+``: at once)."""
    steps = []
    for group in filter(None, (s.strip() for s in text.split(","))):
        for index, item in enumerate(s.strip() for s in group.split("+")):
            parts = item.split(":")
            if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "probe"):
                raise ValueError(f"plan step {item!r} is not VF:MODE[:probe]")
            try:
                vf = int(parts[0])
            except ValueError:
                raise ValueError(f"plan step {item!r}: VF {parts[0]!r} is not an "
                                 f"integer") from None
            steps.append(MigrationStep(vf, parts[1], probe=len(parts) == 3,
                                       concurrent=index > 0))
    return steps


def format_plan(steps: list[MigrationStep]) -> str:
    return "".join(("+" if s.concurrent else "," if i else "") + str(s)
                   for i, s in enumerate(steps))


def plan_groups(steps: list[MigrationStep]) -> list[list[MigrationStep]]:
    """The steps that start together, in order."""
    groups: list[list[MigrationStep]] = []
    for step in steps:
        if step.concurrent and groups:
            groups[-1].append(step)
        else:
            groups.append([step])
    return groups


def check_plan(steps: list[MigrationStep], config: SystemConfig) -> None:
    """Raise ValueError if a step names a missing VF or would overfill a device."""
    where = [Device.HOST] * config.n_vfs
    for group in plan_groups(steps):
        vfs = [step.vf for step in group]
        if len(set(vfs)) != len(vfs):
            raise ValueError(f"plan group {format_plan(group)}: a VF cannot make two moves at "
                             f"once")
    for step in steps:
        if not 0 <= step.vf < config.n_vfs:
            raise ValueError(f"plan step {step}: VF {step.vf} does not exist "
                             f"(n_vfs={config.n_vfs})")
        if step.mode in ("pre", "stop"):
            target = Device(1 - where[step.vf])
            if where.count(target) >= config.slots(target):
                raise ValueError(f"plan step {step}: {target.label} has no free slot")
            where[step.vf] = target
        elif step.mode == "reject":
            target = Device(1 - where[step.vf])
            if where.count(target) < config.slots(target):
                raise ValueError(f"plan step {step}: {target.label} has a free slot, so the "
                                 f"move would not be rejected")


def default_plan(config: SystemConfig, migrations: int | None = None,
                 rng: random.Random | None = None) -> list[MigrationStep]:
    """The ``make sim`` scenario: both directions, a write-heavy VF (``heavy_vfs``), an abort
    of the other write-heavy VF, a stop-copy-only move with an illegal request in the middle,
    and an illegal request on a running VF.  ``migrations`` truncates it or extends it with random
    moves that respect the slot counts."""
    n = config.n_vfs
    heavy = heavy_vfs(config)[0]
    if n >= 5:
        base = [MigrationStep(0, "pre"), MigrationStep(1, "pre"), MigrationStep(heavy, "pre"),
                MigrationStep(4, "abort"), MigrationStep(n - 1, "invalid"),
                MigrationStep(0, "pre"), MigrationStep(3, "stop", probe=True)]
    elif n >= 2:
        base = [MigrationStep(0, "pre"), MigrationStep(1, "abort"),
                MigrationStep(n - 1, "invalid"), MigrationStep(0, "stop", probe=True)]
    else:
        base = [MigrationStep(0, "pre"), MigrationStep(0, "invalid"),
                MigrationStep(0, "stop", probe=True)]
    # a small offload device cannot take every move: drop those its slots cannot hold
    steps = _fit([s for s in base if s.vf < n], config)
    if migrations is None:
        return steps
    moves = [s for s in steps if s.mode != "invalid"]
    if migrations <= len(moves):
        keep = set(map(id, moves[:migrations]))
        return [s for s in steps if s.mode == "invalid" or id(s) in keep]
    rng = rng or random.Random(0)
    where = _placement(steps, config)
    for _ in range(migrations - len(moves)):
        candidates = [vf for vf in range(n)
                      if where.count(Device(1 - where[vf])) < config.slots(Device(1 - where[vf]))]
        if not candidates:
            break
        vf = rng.choice(candidates)
        steps.append(MigrationStep(vf, rng.choice(("pre", "pre", "stop", "abort"))))
        if steps[-1].mode != "abort":
            where[vf] = Device(1 - where[vf])
    return steps


def heavy_vfs(config: SystemConfig) -> tuple[int, ...]:
    """The write-heavy VFs of the default scenario: VF 2 (pre-copy needs several rounds) and
    VF 4, the one aborted, so its rollback happens under heavy writes."""
    if config.n_vfs >= 5:
        return (2, 4)
    return (2,) if config.n_vfs > 2 else (config.n_vfs - 1,)


def _placement(steps: list[MigrationStep], config: SystemConfig) -> list[Device]:
    where = [Device.HOST] * config.n_vfs
    for step in steps:
        if step.mode in ("pre", "stop"):
            where[step.vf] = Device(1 - where[step.vf])
    return where


def _fit(steps: list[MigrationStep], config: SystemConfig) -> list[MigrationStep]:
    where = [Device.HOST] * config.n_vfs
    out = []
    for step in steps:
        if step.mode in ("pre", "stop"):
            target = Device(1 - where[step.vf])
            if where.count(target) >= config.slots(target):
                continue
            where[step.vf] = target
        out.append(step)
    return out


# ---------------------------------------------------------------- records
@dataclass
class MigrationRecord:
    vf: int
    mode: str
    source: Device
    target: Device
    result: str = "pending"   # committed | aborted | rejected | failed | checked
    precopy_rounds: int = 0
    words_sent: int = 0
    downtime_cycles: int = 0
    downtime_phases: dict[str, int] = field(default_factory=dict)  # DOWNTIME_<phase>, lower
    total_cycles: int = 0
    error: str = ""           # STATUS.error/reason when the hardware refused or rolled back
    expected: str = "committed"

    def report(self) -> dict:
        return {"vf": self.vf, "from": self.source.label, "to": self.target.label,
                "result": self.result, "precopy_rounds": self.precopy_rounds,
                "bytes": self.words_sent * 4, "downtime_cycles": self.downtime_cycles,
                "downtime_breakdown": dict(self.downtime_phases),
                "total_cycles": self.total_cycles, "mode": self.mode,
                "expected": self.expected, "error": self.error}


@dataclass(frozen=True)
class Status:
    error: int
    reason: int
    busy: bool
    converged: bool
    ready: bool

    @classmethod
    def from_word(cls, word: int) -> Status:
        elsb, ewidth = STATUS_ERROR
        rlsb, rwidth = STATUS_REASON
        return cls(error=(word >> elsb) & ((1 << ewidth) - 1),
                   reason=(word >> rlsb) & ((1 << rwidth) - 1),
                   busy=bool(word >> STATUS_BUSY & 1),
                   converged=bool(word >> STATUS_CONVERGED & 1),
                   ready=bool(word >> STATUS_READY_TO_COMMIT & 1))

    def error_name(self) -> str:
        try:
            name = ErrorCode(self.error).name
        except ValueError:
            name = f"error {self.error}"
        return f"{name} (reason {self.reason})" if self.reason else name


@dataclass(frozen=True)
class Location:
    device: Device
    slot: int
    migrating: bool

    @classmethod
    def from_word(cls, word: int) -> Location:
        return cls(Device(word & 1), (word >> 8) & 0xFF, bool(word >> LOCATION_MIGRATING & 1))


def _state_name(value: int) -> str:
    try:
        return DeviceState(value).name
    except ValueError:
        return f"state {value}"


class VmmTimeout(AssertionError):
    """A register never reached the value the VMM waited for."""


# ---------------------------------------------------------------- register bus
def control_bus(dut, rng=None, valid_idle: float = 0.0, ready_stall: float = 0.0) -> AxilCsrBus:
    """The VMM's register access: AXI4-Lite on the system's ``axil`` port."""
    master = AxilMaster(dut, "axil", dut.clk, dut.rst, rng=rng, valid_idle=valid_idle,
                        ready_stall=ready_stall)
    return AxilCsrBus(master, dut.clk)


# ---------------------------------------------------------------- the VMM
@dataclass
class Vmm:
    bus: AxilCsrBus
    config: SystemConfig
    log: object                      # logging.Logger-like
    progress: object = print         # callable(str): one line per migration event
    poll_cycles: int = 8
    timeout_cycles: int = 0          # 0: scaled to the image size and round limit
    problems: list[str] = field(default_factory=list)
    records: list[MigrationRecord] = field(default_factory=list)
    irq_check: object = None         # tb.system.irq_check.SystemIrqCheck, when present
    before_commit: object = None     # callable(step), just before CONTROL.COMMIT is written
    before_stop_copy: object = None  # callable(step), just before STOP_COPY is requested
    allow_rollback: bool = False     # link faults: a move may end rolled back (not a problem)

    def __post_init__(self):
        self._sequence = Lock()      # multi-register sequences (IRTE, cycle) of overlapping tasks
        if not self.timeout_cycles:
            cfg = self.config
            self.timeout_cycles = (20_000 + 4 * cfg.layout.image_words
                                   * (cfg.max_precopy_rounds + 2))

    # -- registers
    async def read(self, vf: int, name: str) -> int:
        return await self.bus.read(vf_reg(vf, name))

    async def write(self, vf: int, name: str, value: int) -> None:
        await self.bus.write(vf_reg(vf, name), value)

    async def status(self, vf: int) -> Status:
        return Status.from_word(await self.read(vf, "STATUS"))

    async def location(self, vf: int) -> Location:
        return Location.from_word(await self.read(vf, "LOCATION"))

    async def device_state(self, vf: int) -> DeviceState | int:
        value = await self.read(vf, "DEVICE_STATE") & 7
        try:
            return DeviceState(value)
        except ValueError:
            return value

    async def cycle(self) -> int:
        async with self._sequence:
            lo = await self.bus.read(GLOBAL["CYCLE_LO"])
            hi = await self.bus.read(GLOBAL["CYCLE_HI"])
        return hi << 32 | lo

    async def wait_cycles(self, n: int) -> None:
        if n > 1:
            await Timer((n - 1) * CLOCK_NS, "ns")
        await RisingEdge(self.bus.clock)

    async def wait_for(self, vf: int, sample, done, what: str, describe, reads: int = 1):
        """``await sample()`` (``reads`` register reads of ``vf``) until ``done(value)``, every
        ``poll_cycles``; after ``timeout_cycles`` raise VmmTimeout naming the VF, ``what``,
        ``describe(last value)`` and DEVICE_STATE."""
        waited = 0
        while True:
            value = await sample()
            if done(value):
                return value
            if waited >= self.timeout_cycles:
                state = _state_name(await self.read(vf, "DEVICE_STATE") & 7)
                raise VmmTimeout(f"VF {vf}: timeout after {waited} cycles waiting for {what}: "
                                 f"{describe(value)}, DEVICE_STATE = {state}")
            await self.wait_cycles(self.poll_cycles)
            waited += self.poll_cycles + 2 * reads

    async def poll(self, vf: int, name: str, done, what: str, decode=None):
        """Read ``name`` of ``vf`` until ``done(decoded value)`` (``wait_for``)."""
        async def sample():
            raw = await self.read(vf, name)
            return raw, (decode(raw) if decode else raw)
        _, value = await self.wait_for(vf, sample, lambda rv: done(rv[1]), what,
                                       lambda rv: f"{name} = 0x{rv[0]:08x} ({rv[1]})")
        return value

    async def request(self, vf: int, state: DeviceState) -> Status:
        """Write REQUESTED_STATE and wait until the hardware has walked the arcs."""
        await self.write(vf, "REQUESTED_STATE", int(state))
        return await self.poll(vf, "STATUS", lambda s: not s.busy,
                               f"busy=0 after requesting {state.name}", Status.from_word)

    def problem(self, text: str) -> None:
        self.problems.append(text)
        self.log.error("VMM check failed: %s", text)

    def expect(self, condition: bool, text: str) -> None:
        if not condition:
            self.problem(text)

    # -- actions
    async def run(self, step: MigrationStep) -> MigrationRecord:
        if step.mode == "invalid":
            return await self.invalid_request(step.vf, DeviceState.ERROR)
        rec = await self.migrate(step)
        await self.check_irtes(step.vf)
        return rec

    # -- interrupt remapping (IRTE_CMD / IRTE_DATA / IRQ_FAULT)
    async def irte_command(self, op: RemapOp, vf: int, vector: int) -> None:
        """Issue an IRTE command and wait until the remapper took it."""
        await self.bus.write(GLOBAL["IRTE_CMD"], irte_cmd(op, vf, vector))
        waited = 0
        while True:
            word = await self.bus.read(GLOBAL["IRTE_CMD"])
            if not word >> IRTE_CMD_BUSY & 1:
                break
            if waited >= self.timeout_cycles:
                raise VmmTimeout(f"IRTE {op.name} of VF {vf} vector {vector}: still busy after "
                                 f"{waited} cycles")
            await self.wait_cycles(self.poll_cycles)
            waited += self.poll_cycles + 2
        self.expect(not word >> IRTE_CMD_REFUSED & 1,
                    f"IRTE {op.name} of VF {vf} vector {vector} refused (IRTE_CMD 0x{word:x})")

    async def write_irte(self, vf: int, vector: int, entry: RemapEntry) -> None:
        async with self._sequence:
            await self.bus.write(GLOBAL["IRTE_DATA"], entry.pack(self.config.irq_remap))
            await self.irte_command(RemapOp.WRITE, vf, vector)

    async def read_irte(self, vf: int, vector: int) -> int:
        """IRTE_DATA after a READ: the entry and, in bit 31, its pending bit."""
        async with self._sequence:
            await self.irte_command(RemapOp.READ, vf, vector)
            return await self.bus.read(GLOBAL["IRTE_DATA"])

    async def program_irtes(self) -> None:
        """Every VF's entries: present, unmasked, EXACT source = its place (host slot vf)."""
        for vf in range(self.config.n_vfs):
            loc = await self.location(vf)
            for vector in range(self.config.layout.msix_vectors):
                await self.write_irte(vf, vector, irte_entry(vf, vector, loc.device, loc.slot))

    async def check_irtes(self, vf: int, timeout: int = 20_000) -> None:
        """Read back the VF's entries: each must follow the VF to where it runs now (and the
        remapper check compares entry and pending bit with the golden model).  The remapper
        retargets an entry only once no interrupt from the old place waits at its input,
        and replays a pending one as the VMs take interrupts: with VMs slow to take them,
        that comes a while after the commit, so an entry is read until it has moved (and
        its pending bit cleared) or ``timeout`` cycles passed."""
        loc = await self.location(vf)
        start = await self.cycle()
        for vector in range(self.config.layout.msix_vectors):
            while True:
                word = await self.read_irte(vf, vector)
                entry = (self.irq_check.read_result(0, word) if self.irq_check
                         else RemapEntry.unpack(self.config.irq_remap,
                                                word & ((1 << IRTE_DATA_PENDING) - 1)))
                settled = (entry.source == (int(loc.device), loc.slot)
                           and (entry.mask or not word >> IRTE_DATA_PENDING & 1))
                if settled or await self.cycle() - start > timeout:
                    break
                await self.wait_cycles(32)
            self.expect(entry.source == (int(loc.device), loc.slot),
                        f"VF {vf} vector {vector}: IRTE expects source {entry.source}, the VF "
                        f"runs at {(int(loc.device), loc.slot)}")
            self.expect(entry.canonical() == irte_entry(vf, vector, loc.device, loc.slot,
                                                        mask=entry.mask),
                        f"VF {vf} vector {vector}: IRTE reads {entry}")
            self.expect(entry.mask or not word >> IRTE_DATA_PENDING & 1,
                        f"VF {vf} vector {vector}: pending bit left set on an unmasked entry "
                        f"after the migration")

    async def pop_faults(self) -> list[dict[str, int]]:
        """Read IRQ_FAULT until the fault queue is empty."""
        records = []
        while True:
            word = await self.bus.read(GLOBAL["IRQ_FAULT"])
            if self.irq_check:
                record = self.irq_check.fault(0, word)
            else:
                record = irq_fault_fields(word)
                record = record if record.pop("valid") else None
            if record is None:
                return records
            records.append(record)

    async def irq_counters(self) -> dict[str, int]:
        """The remapper's counters, named as ``tb.irq_remap.HW_COUNTERS``."""
        names = {"raised_count": "IRQ_RAISED", "delivered_count": "IRQ_DELIVERED",
                 "blocked_count": "IRQ_BLOCKED", "coalesced_count": "IRQ_COALESCED",
                 "fault_dropped": "IRQ_FAULTS_DROPPED"}
        return {name: await self.bus.read(GLOBAL[reg]) for name, reg in names.items()}

    async def link_counters(self) -> dict[str, dict[str, int]]:
        """Every link register (model/regmap.py): the counters of each device's link port
        (``host``, ``offload``: model.link.STAT_NAMES plus ``mig_malformed`` and
        ``io_malformed``)."""
        out = {}
        for port in ("host", "offload"):
            out[port] = {stat: await self.bus.read(link_reg(port, stat))
                         for stat in LINK_STAT_NAMES}
            for name in ("MIG_MALFORMED", "IO_MALFORMED"):
                out[port][name.lower()] = await self.bus.read(GLOBAL[f"{name}_{port.upper()}"])
        return out

    async def migrate(self, step: MigrationStep) -> MigrationRecord:
        vf = step.vf
        loc = await self.location(vf)
        rec = MigrationRecord(vf, step.mode, loc.device, Device(1 - loc.device),
                              expected=EXPECTED.get(step.mode, "committed"))
        self.records.append(rec)
        counts = await self.read(vf, "MIGRATIONS")
        state = await self.device_state(vf)
        self.expect(state == DeviceState.RUNNING,
                    f"VF {vf}: DEVICE_STATE is {_state_name(state)} before migrating, "
                    f"not RUNNING")
        self.progress(f"migration {len(self.records)}: VF {vf} {rec.source.label} -> "
                      f"{rec.target.label} ({step.mode}) starts")
        start = await self.cycle()
        if step.mode in ("pre", "abort", "reject"):
            status = await self.request(vf, DeviceState.PRE_COPY)
            if status.error:
                return await self._refused(rec, status, loc, start, "PRE_COPY")
            if step.mode == "abort":
                return await self._abort(rec, step, loc, counts, start)
            status = await self.poll(vf, "STATUS", lambda s: s.converged or s.error,
                                     "pre-copy to converge", Status.from_word)
            if status.error:
                return await self._refused(rec, status, loc, start, "PRE_COPY rounds")
        if self.before_stop_copy:
            self.before_stop_copy(step)
        status = await self.request(vf, DeviceState.STOP_COPY)
        if status.error:
            return await self._refused(rec, status, loc, start, "STOP_COPY")
        if step.probe:
            await self.invalid_request(vf, DeviceState.PRE_COPY, expect_state=DeviceState.STOP_COPY)
        status = await self.request(vf, DeviceState.STOP)
        if status.error:
            return await self._refused(rec, status, loc, start, "STOP")
        self.expect(status.ready, f"VF {vf}: STATUS.ready_to_commit is 0 in STOP after "
                                  f"STOP_COPY (STATUS {status})")
        if self.before_commit:
            self.before_commit(step)
        await self.write(vf, "CONTROL", 1 << CONTROL_COMMIT)

        async def placed():
            return await self.location(vf), await self.status(vf)
        location, st = await self.wait_for(
            vf, placed, lambda ls: ls[0].device != rec.source or ls[1].error, "the commit",
            lambda ls: f"LOCATION {ls[0]}, STATUS {ls[1]}", reads=2)
        if st.error and location.device == rec.source:
            return await self._refused(rec, st, loc, start, "COMMIT")
        # DEVICE_STATE follows the location: wait until the VF runs at its new place.
        await self.poll(vf, "DEVICE_STATE", lambda s: s == DeviceState.RUNNING,
                        "RUNNING after commit", lambda raw: raw & 7)
        end = await self.cycle()
        rec.result = "committed"
        await self._stats(rec, start, end)
        self.expect(st.error == 0, f"VF {vf}: STATUS.error {st.error_name()} after commit")
        self.expect(0 < rec.downtime_cycles <= rec.total_cycles,
                    f"VF {vf}: DOWNTIME {rec.downtime_cycles} cycles outside (0, total "
                    f"{rec.total_cycles}] for a committed migration")
        self.expect(not location.migrating, f"VF {vf}: LOCATION.migrating still set after commit")
        after = await self.read(vf, "MIGRATIONS")
        self.expect(after & 0xFFFF == (counts & 0xFFFF) + 1,
                    f"VF {vf}: MIGRATIONS.committed {counts & 0xFFFF} -> {after & 0xFFFF}, "
                    f"expected +1")
        self._done(rec)
        return rec

    async def _abort(self, rec: MigrationRecord, step: MigrationStep, loc: Location,
                     counts: int, start: int) -> MigrationRecord:
        vf = rec.vf
        await self._wait_rounds(vf, step.abort_after_rounds)
        status = await self.request(vf, DeviceState.RUNNING)
        end = await self.cycle()
        rec.result = "aborted"
        rec.error = status.error_name() if status.error else ""
        await self._stats(rec, start, end)
        await self._check_rolled_back(rec, loc)
        after = await self.read(vf, "MIGRATIONS")
        self.expect(after >> 16 == (counts >> 16) + 1,
                    f"VF {vf}: MIGRATIONS.aborted {counts >> 16} -> {after >> 16} after an "
                    f"abort, expected +1")
        if status.error:
            await self.write(vf, "CONTROL", 1 << CONTROL_CLEAR_ERROR)
        self._done(rec)
        return rec

    async def _refused(self, rec: MigrationRecord, status: Status, loc: Location, start: int,
                       where: str) -> MigrationRecord:
        """The hardware refused or rolled back: the VF must run at its source again."""
        rec.result = "rejected" if status.error == ErrorCode.REJECTED else "aborted"
        rec.error = f"{status.error_name()} at {where}"
        self.log.warning("VF %d: migration %s (%s)", rec.vf, rec.result, rec.error)
        if status.error == ErrorCode.INVALID_TRANSITION:
            self.problem(f"VF {rec.vf}: a legal request was refused: {rec.error}")
        else:
            # Rolled back by the hardware: wait until it has walked back to RUNNING.
            await self.poll(rec.vf, "DEVICE_STATE", lambda s: s == DeviceState.RUNNING,
                            "RUNNING after a rollback", lambda raw: raw & 7)
        end = await self.cycle()
        await self._stats(rec, start, end)
        await self._check_rolled_back(rec, loc)
        await self.write(rec.vf, "CONTROL", 1 << CONTROL_CLEAR_ERROR)
        self._done(rec)
        return rec

    async def _wait_rounds(self, vf: int, rounds: int) -> None:
        """Wait until the whole image went over once (PRECOPY_INITIAL_BYTES = 0) and then
        ``rounds`` dirty rounds ran, or pre-copy converged first (ROUNDS may only be
        published when the migration ends)."""
        async def progress():
            return (await self.read(vf, "PRECOPY_INITIAL_BYTES"), await self.status(vf),
                    await self.read(vf, "ROUNDS"))

        def finished(isd) -> bool:
            initial, status, done = isd
            return status.error or (initial == 0 and (done >= rounds or status.converged))
        await self.wait_for(vf, progress, finished, f"{rounds} pre-copy round(s)",
                            lambda isd: f"PRECOPY_INITIAL_BYTES = {isd[0]}, ROUNDS = {isd[2]}, "
                                        f"STATUS {isd[1]}", reads=3)

    async def _check_rolled_back(self, rec: MigrationRecord, loc: Location) -> None:
        vf = rec.vf
        state = await self.device_state(vf)
        self.expect(state == DeviceState.RUNNING,
                    f"VF {vf}: DEVICE_STATE {_state_name(state)} after {rec.result}, "
                    f"expected RUNNING at its source")
        now = await self.location(vf)
        self.expect((now.device, now.slot) == (loc.device, loc.slot),
                    f"VF {vf}: LOCATION {now} after {rec.result}, expected {loc}")
        self.expect(not now.migrating, f"VF {vf}: LOCATION.migrating still set after "
                                       f"{rec.result}")

    async def _stats(self, rec: MigrationRecord, start: int, end: int) -> None:
        rec.precopy_rounds = await self.read(rec.vf, "ROUNDS")
        rec.words_sent = await self.read(rec.vf, "WORDS_SENT")
        rec.downtime_cycles, rec.downtime_phases, settled = await self.downtime(rec.vf)
        # the move ends when the VF can be served again: after its release replay, when
        # that was still running as the VF showed RUNNING at its new place
        rec.total_cycles = (settled if settled is not None else end) - start

    async def downtime(self, vf: int, timeout: int = 20_000
                       ) -> tuple[int, dict[str, int], int | None]:
        """DOWNTIME and its phases, read between two equal DOWNTIME reads (the phases must
        sum to it), and the cycle it was seen stopped if it was still counting at the first
        read (else None).  After a commit the hold may still count for a while: the target
        replays the VF's pending interrupts first, as fast as the VMs take them."""
        start = await self.cycle()
        total = await self.read(vf, "DOWNTIME")
        settled = None
        while True:
            phases = {p.name.lower(): await self.read(vf, f"DOWNTIME_{p.name}")
                      for p in DowntimePhase}
            again = await self.read(vf, "DOWNTIME")
            if again == total:
                self.expect(sum(phases.values()) == total,
                            f"VF {vf}: DOWNTIME phases {phases} sum to "
                            f"{sum(phases.values())}, not DOWNTIME {total}")
                return total, phases, (await self.cycle() if settled is not None else None)
            settled = await self.cycle()
            if settled - start > timeout:
                self.problem(f"VF {vf}: DOWNTIME still counting {timeout} cycles after the "
                             f"migration ended ({again})")
                return again, phases, settled
            total = again
            await self.wait_cycles(32)

    def _done(self, rec: MigrationRecord) -> None:
        tail = f" [{rec.error}]" if rec.error else ""
        flag = "" if rec.result == rec.expected else f"  UNEXPECTED (wanted {rec.expected})"
        number = next(i for i, r in enumerate(self.records, 1) if r is rec)
        self.progress(f"migration {number}: VF {rec.vf} "
                      f"{rec.source.label} -> {rec.target.label} {rec.result}: "
                      f"{rec.precopy_rounds} rounds, {rec.words_sent * 4} bytes, downtime "
                      f"{rec.downtime_cycles} cycles, total {rec.total_cycles} cycles"
                      f"{tail}{flag}")
        if (self.allow_rollback and rec.expected == "committed" and rec.result == "aborted"
                and rec.error):
            self.progress(f"migration {number}: rolled back, allowed under link faults")
        elif rec.result != rec.expected:
            self.problem(f"VF {rec.vf}: migration {rec.mode} ended {rec.result} "
                         f"({rec.error or 'no error'}), expected {rec.expected}")

    async def invalid_request(self, vf: int, state: DeviceState,
                              expect_state: DeviceState | None = None) -> MigrationRecord:
        """Request an illegal state: STATUS.error must become INVALID_TRANSITION with
        DEVICE_STATE, REQUESTED_STATE and LOCATION unchanged; CONTROL.CLEAR_ERROR clears it."""
        before = await self.device_state(vf)
        requested = await self.read(vf, "REQUESTED_STATE") & 7
        loc = await self.location(vf)
        if expect_state is not None:
            self.expect(before == expect_state, f"VF {vf}: DEVICE_STATE {_state_name(before)}, "
                                                f"expected {expect_state.name}")
        status = await self.request(vf, state)
        after = await self.device_state(vf)
        what = f"VF {vf}: invalid request {_state_name(before)} -> {state.name}"
        self.expect(status.error == ErrorCode.INVALID_TRANSITION,
                    f"{what}: STATUS.error = {status.error_name()}, expected INVALID_TRANSITION")
        self.expect(after == before, f"{what}: DEVICE_STATE changed to {_state_name(after)}")
        self.expect(await self.read(vf, "REQUESTED_STATE") & 7 == requested,
                    f"{what}: REQUESTED_STATE changed (it reads the last accepted request)")
        self.expect(await self.location(vf) == loc, f"{what}: LOCATION changed")
        await self.write(vf, "CONTROL", 1 << CONTROL_CLEAR_ERROR)
        cleared = await self.status(vf)
        self.expect(cleared.error == 0, f"{what}: CONTROL.CLEAR_ERROR left STATUS.error = "
                                        f"{cleared.error_name()}")
        self.progress(f"check: VF {vf} invalid request {_state_name(before)} -> {state.name}: "
                      f"STATUS.error={status.error_name()}, state "
                      f"{'unchanged' if after == before else 'CHANGED'}")
        rec = MigrationRecord(vf, "invalid", loc.device, loc.device, result="checked",
                              expected="checked",
                              error=status.error_name() if status.error else "")
        return rec
