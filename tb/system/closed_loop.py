"""The closed loop in RTL (issue 5 item 7): workload in, measured, decided, migrated, reported.

``ClosedLoopScenario`` runs the RTL system under a workload of ``model/workload.py`` (the
phase-changing mix of the policy benchmark, or a trace file). Every ``window`` cycles the
VMM closes the hardware profiler's window (PROFILER_SNAPSHOT) and reads every counter over
AXI4-Lite, ``model.profiler.Profiler`` turns the snapshot into workload data, the policy
(``model/manager.py``: ``vfmanager``, ``seed`` or ``static_host``) decides, and each
migration it asks for runs through the VMM's VFIO procedure (pre-copy, stop-copy, commit)
while the traffic goes on. Committed migrations are fed back to the policy
(``MigrationOutcome``: measured downtime and words).

Everything the scripted scenario checks still holds here: every response is predicted by the
golden VFs, every interrupt is proven exactly-once at the remapper, the spoof attempts are
blocked, and the images are read back at the end. On top, the report gains ``policy`` (the
request latency seen by the VMs from each request's arrival, throughput, migrations,
thrash), a per-VF ``placements`` timeline and every decision's reason.

A workload request of ``words`` words is replayed as ``words`` single-word requests, all
arriving at the request's cycle: a request's latency counts from that arrival to its
response, so the time a word waits behind the rest of its transfer (and behind the request
stream's backpressure) is part of what the VM sees. Every
VF also raises one interrupt per window (a heartbeat), so interrupt traffic runs on every VF
whatever its workload class (``heartbeat``; the RTL/fastsim cross-check turns it off).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import cocotb
from cocotb.triggers import Event, RisingEdge, Timer

from hdl.profiler import PROFILER_DEVICE_REGS, vf_register_names
from model.config import Device, SystemConfig
from model.fastsim import FastSimConfig
from model.manager import Decision, MigrationOutcome, SystemView, make_policy
from model.profiler import Profiler
from model.regmap import GLOBAL, profiler_reg
from model.state import Op
from model.workload import Source, load_trace, phase_mix, showcase
from tb.profiler import counter_snapshot, device_snapshot

from .traffic import TrafficGenerator
from .vmm import CLOCK_NS, MigrationStep

POLICY_NAMES = {"vfmanager": "vfmanager", "seed": "seed", "static": "static_host",
                "static_host": "static_host"}


def parse_params(text: str) -> dict[str, float]:
    """``"cooldown=20000,link_budget=0.3"`` -> {name: number}; names are checked by the
    policy (``model.manager.make_policy`` names an unknown one)."""
    params: dict[str, float] = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"policy parameter {item!r} is not NAME=VALUE")
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"policy parameter {name.strip()}: {value!r} is not a "
                             f"number") from None
        params[name.strip()] = int(number) if number.is_integer() else number
    return params


def rtl_vfmanager_params(window: int) -> dict[str, float]:
    """The VF Manager's time constants at the RTL's scale: a run is some 30 windows, so the
    cooldown is 6 windows (fastsim's 100 000 cycles are longer than a whole RTL run) and the
    slow rate average weighs the newest window 0.25 (memory of ~4 windows; fastsim's 0.1
    would take a third of the run to notice a phase change)."""
    return {"cooldown": 6 * window, "slow_smoothing": 0.25}


def make_rtl_policy(name: str, config: SystemConfig, window: int, params: dict):
    """The policy of a run, at the RTL's time scale (``rtl_vfmanager_params``); ``params``
    override."""
    if name not in POLICY_NAMES:
        raise ValueError(f"unknown policy {name!r}: choose one of vfmanager, seed, static")
    name = POLICY_NAMES[name]
    if name == "vfmanager":
        params = {**rtl_vfmanager_params(window), **params}
        return name, make_policy(name, FastSimConfig.from_system(config).system_model(),
                                 **params)
    return name, make_policy(name, **params)


HOST_UTILISATION = 0.8   # the phase mix's host load in RTL when every VF stays on the host


WORKLOADS = ("showcase", "phase-mix")


def make_source(config: SystemConfig, duration: int, seed: int, trace: str = "",
                phase_cycles: int = 0, load: float = 0.0, workload: str = "phase-mix") -> Source:
    """The workload: a trace file, ``showcase`` (``model.workload.showcase``: a VF per
    placement rule, at the RTL's scale) or the phase-changing mix with phases of
    ``phase_cycles`` (default: a third of the run, so every phase shows up).

    ``load`` scales the rates; 0 (default) is 1 for the showcase and, for the mix, the scale
    at which the host VF unit would be ``HOST_UTILISATION`` busy with every VF on it. The RTL
    replays a request of ``words`` words as ``words`` single-word requests of
    ``host_latency + 1`` cycles each, where fastsim charges ``host_latency + words``;
    unscaled, the mix would overload the RTL host several times over."""
    if trace:
        return load_trace(trace, n_vfs=config.n_vfs, layout=config.layout)
    if workload not in WORKLOADS:
        raise ValueError(f"unknown workload {workload!r}: choose one of {', '.join(WORKLOADS)}")
    if workload == "showcase":
        return showcase(config.n_vfs, duration, seed, config.layout, load=load or 1.0)
    phase_cycles = phase_cycles or max(1, duration // 3)
    if load <= 0:
        probe = phase_mix(config.n_vfs, duration, seed, phase_cycles=phase_cycles,
                          layout=config.layout)
        words = sum(r.words for r in probe.requests())
        busy = words * (config.host_latency + 1) / duration
        load = HOST_UTILISATION / busy if busy else 1.0
    return phase_mix(config.n_vfs, duration, seed, load=load, phase_cycles=phase_cycles,
                     layout=config.layout)


def percentile(sorted_values: list[int], q: float) -> float:
    """Nearest-rank percentile (as model.fastsim)."""
    if not sorted_values:
        return 0.0
    return float(sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)])


@dataclass
class Move:
    vf: int
    source: Device
    target: Device
    issued: int
    reason: str
    result: str = "pending"
    committed: int = 0
    downtime: int = 0
    thrash: bool = False

    def report(self) -> dict:
        return {"vf": self.vf, "from": self.source.label, "to": self.target.label,
                "issued": self.issued, "committed": self.committed, "result": self.result,
                "downtime_cycles": self.downtime, "thrash": self.thrash, "reason": self.reason}


@dataclass
class LoopStats:
    latencies: list[int] = field(default_factory=list)
    words: int = 0
    first: int = 0
    last: int = 0
    windows: int = 0
    decisions: int = 0
    held_back: dict[str, int] = field(default_factory=dict)
    # this window's response latencies by the device that served them
    window_latencies: dict[Device, list[int]] = field(
        default_factory=lambda: {Device.HOST: [], Device.OFFLOAD: []})


class ClosedLoop:
    """Drives the workload, closes the windows, runs the policy and its migrations."""

    def __init__(self, test, source: Source, policy_name: str, policy, window: int,
                 thrash_window: int, gen: TrafficGenerator, heartbeat: bool = True):
        self.test, self.source, self.gen = test, source, gen
        self.policy_name, self.policy = policy_name, policy
        self.window, self.thrash_window = window, thrash_window
        self.heartbeat = heartbeat
        self.config: SystemConfig = test.config
        self.vmm, self.bfm = test.vmm, test.bfm
        self.profiler = Profiler.from_config(self.config)
        self.location = [Device.HOST] * self.config.n_vfs
        self.migrating: dict[int, Device] = {}
        self.moves: list[Move] = []
        self.placements: list[dict] = [{"cycle": 0, "vf": vf, "device": "host",
                                        "reason": "initial placement"}
                                       for vf in range(self.config.n_vfs)]
        self.stats = LoopStats()
        self.windows: list[dict] = []   # per window: p99 per device, busy, link use
        self._arrival: dict[tuple[int, int], int] = {}
        # One outgoing migration per device at a time (the engine's limit): moves wait in
        # their source device's queue, in decision order, as in model.fastsim.
        self._queues: dict[Device, deque[Move]] = {Device.HOST: deque(), Device.OFFLOAD: deque()}
        self._more = Event()
        self._done = False
        self._start = 0

    # ------------------------------------------------------------ time
    def now(self) -> int:
        return self.bfm.cycles - self._start

    async def until(self, cycle: int) -> None:
        wait = cycle - self.now()
        if wait > 1:
            await Timer((wait - 1) * CLOCK_NS, "ns")
        while self.now() < cycle:
            await RisingEdge(self.test.dut.clk)

    # ------------------------------------------------------------ the run
    async def run(self, duration: int) -> None:
        # the first window starts with the workload: the set-up traffic goes to a snapshot
        # nobody reads
        await self.vmm.bus.write(GLOBAL["PROFILER_SNAPSHOT"], 1)
        self._start = self.bfm.cycles
        self.stats.first = self._start
        forward = self.bfm.on_response
        self.bfm.on_response = lambda resp: (self._responded(resp), forward(resp))
        workers = [cocotb.start_soon(self._migrations(d)) for d in self._queues]
        driver = cocotb.start_soon(self._drive())
        windows = cocotb.start_soon(self._windows(duration))
        await driver
        await windows
        self._done = True
        self._more.set()
        for worker in workers:
            await worker
        self.bfm.on_response = forward

    async def _drive(self) -> None:
        for req in self.source.requests():
            await self.until(req.cycle)
            for i in range(req.words):
                if req.op == Op.NOTIFY:
                    vm_req = self.gen.request(req.vf, Op.NOTIFY, 0, req.data)
                else:
                    vm_req = self.gen.request(req.vf, req.op, req.addr + i,
                                              req.data if req.op != Op.ADD else 1 + i)
                # latency counts from the workload's arrival cycle: time spent waiting for
                # the request stream (backpressure) is part of what the VM sees
                self._arrival[(vm_req.vf, vm_req.tag)] = req.cycle
                await self.bfm.send(vm_req)

    def _responded(self, resp) -> None:
        arrived = self._arrival.pop((resp.vf, resp.tag), None)
        if arrived is not None:
            latency = self.now() - arrived
            self.stats.latencies.append(latency)
            self.stats.window_latencies[self.location[resp.vf]].append(latency)
            self.stats.words += 1
            self.stats.last = self.bfm.cycles

    async def _windows(self, duration: int) -> None:
        n_vfs = self.config.n_vfs
        end = self.window
        while end <= duration:
            await self.until(end)
            for vf in range(n_vfs if self.heartbeat else 0):   # one interrupt per VF
                heartbeat = self.gen.request(vf, Op.NOTIFY, 0, vf % self.config.layout.msix_vectors)
                self._arrival[(vf, heartbeat.tag)] = self.now()
                await self.bfm.send(heartbeat)
            report = await self.read_window(end)
            view = SystemView(end, tuple(self.location), dict(self.migrating),
                              (self.config.host_slots, self.config.offload_slots),
                              self._slots_used())
            decisions = self.policy.decide(report, view)
            self.stats.windows += 1
            self._record_window(report)
            self._apply(decisions, end)
            end += self.window

    async def read_window(self, end: int):
        bus, n_vfs = self.vmm.bus, self.config.n_vfs
        await bus.write(GLOBAL["PROFILER_SNAPSHOT"], 1)
        snaps = []
        for vf in range(n_vfs):
            regs = {name: await bus.read(profiler_reg(vf, i))
                    for i, name in enumerate(vf_register_names(self.config.profiler_bins))}
            snaps.append(counter_snapshot(vf, regs))
        regs = {name: await bus.read(profiler_reg(n_vfs, i))
                for i, name in enumerate(PROFILER_DEVICE_REGS)}
        device = device_snapshot(regs, (self.config.host_slots, self.config.offload_slots),
                                 self.config.link.words_per_flit)
        return self.profiler.analyse(snaps, device, end=end)

    def _record_window(self, report) -> None:
        """What the timeline picture shows per window: each device's p99 request latency
        (measured by the testbench, by the device that served the response), its busy
        fraction and the link utilisation (both from the hardware profiler)."""
        c, row = report.contention, {"end": report.end}
        for device, lat in self.stats.window_latencies.items():
            row[f"{device.label}_p99"] = percentile(sorted(lat), 0.99)
            row[f"{device.label}_requests"] = len(lat)
            row[f"{device.label}_busy"] = round(c.busy(device), 4)
            lat.clear()
        row["link_utilisation"] = round(c.link_utilisation, 4)
        self.windows.append(row)

    def _slots_used(self) -> tuple[int, int]:
        used = [0, 0]
        for vf, where in enumerate(self.location):
            used[int(where)] += 1
            if vf in self.migrating:
                used[int(self.migrating[vf])] += 1
        return used[0], used[1]

    def _apply(self, decisions: list[Decision], t: int) -> None:
        for d in decisions:
            self.stats.decisions += 1
            if not d.migrate:
                kind = d.reason.split(":")[0].split(" (")[0][:40]
                self.stats.held_back[kind] = self.stats.held_back.get(kind, 0) + 1
                continue
            free = self._slots_used()[int(d.target)] < self.config.slots(Device(d.target))
            if (d.vf in self.migrating or self.location[d.vf] != d.source
                    or d.source == d.target or not free):
                self.test.progress(f"window {t}: refused: {d}")
                continue
            move = Move(d.vf, Device(d.source), Device(d.target), t, d.reason)
            self.moves.append(move)
            self.migrating[d.vf] = Device(d.target)
            self.test.progress(f"cycle {t}: {d}")
            self._queues[move.source].append(move)
            self._more.set()

    async def _migrations(self, source: Device) -> None:
        queue = self._queues[source]
        while True:
            if queue:
                await self._migrate(queue.popleft())
            elif self._done:
                return
            else:
                self._more.clear()
                await self._more.wait()

    async def _migrate(self, move: Move) -> None:
        rec = await self.vmm.run(MigrationStep(move.vf, "pre"))
        now = self.now()
        self.migrating.pop(move.vf, None)
        move.result = rec.result
        if rec.result != "committed":
            self.test.progress(f"cycle {now}: VF {move.vf} stays on {move.source.label}: "
                               f"{rec.result} {rec.error}")
            return
        move.committed, move.downtime = now, rec.downtime_cycles
        previous = [m for m in self.moves if m.vf == move.vf and m.result == "committed"
                    and m is not move]
        move.thrash = bool(previous) and now - previous[-1].committed < self.thrash_window
        self.location[move.vf] = move.target
        self.placements.append({"cycle": now, "vf": move.vf, "device": move.target.label,
                                "reason": move.reason})
        self.policy.observe(MigrationOutcome(move.vf, move.source, move.target, move.issued,
                                             now, rec.downtime_cycles, rec.words_sent))

    # ------------------------------------------------------------ results
    def metrics(self) -> dict:
        lat = sorted(self.stats.latencies)
        span = max(1, self.stats.last - self.stats.first)
        committed = [m for m in self.moves if m.result == "committed"]
        return {"mean_latency": round(sum(lat) / len(lat), 2) if lat else 0.0,
                "p99_latency": round(percentile(lat, 0.99), 2),
                "throughput": round(4 * self.stats.words / span, 4),
                "migrations": len(committed), "thrash": sum(m.thrash for m in committed)}

    def report(self) -> dict:
        return {"policy": {"name": self.policy_name, "window": self.window,
                           "thrash_window": self.thrash_window, "windows": self.stats.windows,
                           "requests": len(self.stats.latencies), **self.metrics(),
                           "held_back": self.stats.held_back},
                "decisions": [m.report() for m in self.moves],
                "placements": self.placements, "windows": self.windows}

