"""The full-system pyuvm environment (docs/design.md).

``SystemEnv`` holds a VM-traffic agent (sequencer, driver, monitor), a VMM agent (the
register driver and the migration procedure of ``tb/system/vmm.py``) and the scoreboard of
``tb/system/traffic.py`` fed through analysis ports, plus the cycle-level remapper check of
``tb/system/irq_check.py`` that the BFM feeds from the ``irq_trace`` port.

All per-cycle work on the VM-facing ports runs in one coroutine, ``VmBfm``: it drives the
request stream, and samples the response and interrupt streams (random ``ready`` drops for
backpressure), two triggers per cycle.  The driver and monitor only exchange whole
transactions with it, so Python stays off the per-cycle path as far as a cocotb bench can.

Scenario knobs travel from the CLI/pytest to the cocotb test as ``VFMIG_*`` environment
variables (``Knobs``); the system configuration as JSON in ``VFMIG_CONFIG``.
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter, deque
from dataclasses import asdict, dataclass, fields

from cocotb.triggers import Event, ReadOnly, RisingEdge
from pyuvm import (
    ConfigDB,
    uvm_component,
    uvm_env,
    uvm_scoreboard,
    uvm_sequence,
    uvm_sequence_item,
    uvm_subscriber,
)

from hdl.formats import system_irq_layout, system_request_layout, system_response_layout
from model.config import SystemConfig
from tb.common.streams import pack, unpack
from tb.common.uvm import BfmDriver, BfmMonitor, ItemListSeq, SequencedAgent

from .irq_check import SystemIrqCheck
from .traffic import Scoreboard, TrafficGenerator, VmInterrupt, VmRequest, VmResponse
from .vmm import Vmm, control_bus


# ---------------------------------------------------------------- configuration and knobs
def config_to_json(config: SystemConfig) -> str:
    return json.dumps(config.to_dict(), sort_keys=True)


@dataclass
class Knobs:
    """Runtime knobs of the system scenario (no rebuild needed to change them)."""
    seed: int = 1
    sim: str = "verilator"
    plan: str = ""               # empty: tb.system.vmm.default_plan
    migrations: int = -1         # -1: the default plan's length
    heavy_vfs: str = ""          # comma list; empty: tb.system.vmm.heavy_vfs
    storm_vfs: str = ""          # comma list of VFs whose traffic is an interrupt storm
    irte_mask: int = 0           # 1: mask vector 0's IRTE across every migration
    idle_prob: float = 0.3       # request stream: idle cycles between requests
    resp_backpressure: float = 0.1
    irq_backpressure: float = 0.1
    error_prob: float = 0.01     # requests that must fail (past the image, bad vector)
    unknown_vf_prob: float = 0.005  # requests to VF ids the system does not have
    warmup_cycles: int = 1000    # traffic before the first migration
    gap_cycles: int = 600        # traffic between two migrations
    policy: str = ""             # closed loop (tb/system/closed_loop.py): vfmanager|seed|static
    policy_params: str = ""      # NAME=VALUE,... for the policy
    workload: str = "showcase"   # closed loop: showcase | phase-mix (model/workload.py)
    trace: str = ""              # closed loop: a workload trace file (instead of `workload`)
    duration: int = 150_000      # closed loop: workload cycles
    window: int = 5_000          # closed loop: profiler window, cycles
    load: float = 0.0            # closed loop: rate scale (0: showcase 1, phase mix host 80 %)
    heartbeat: int = 1           # closed loop: 1 = every VF raises one interrupt per window
    # link faults (tb/system/link.py), on both wires, seeded from `seed`
    ber: float = 0.0             # bit error rate over each flit and its sop bit
    burst_rate: float = 0.0      # flits hit by a burst of 8 flipped bits
    drop_rate: float = 0.0       # flits lost
    dup_rate: float = 0.0        # flits delivered twice
    delay_rate: float = 0.0      # flits that stall the wire for 1..8 cycles
    link_down: str = ""          # "START:CYCLES,...": both wires down (cycles from the start)
    link_down_step: str = ""     # "STEP:CYCLES,...": both wires down as plan step STEP starts
    link_down_commit: str = ""   # "STEP:CYCLES,...": both wires down as step STEP commits
    phase_faults: str = ""       # "STEP:PHASE:KIND,...": a fault as step STEP's migration
                                 # enters PHASE (tb/system/phase_fault.py)
    irq_pause: int = 0           # cycles the VMs take no interrupt from each phase fault on
    allow_rollback: int = 0      # 1: a move may end rolled back (heavy faults: timeouts)
    report: str = ""             # where to write the JSON report
    progress: str = ""           # file to append progress lines to (the CLI tails it)

    PREFIX = "VFMIG_"

    @classmethod
    def from_env(cls, environ=None) -> Knobs:
        environ = os.environ if environ is None else environ
        knobs = cls()
        for f in fields(cls):
            raw = environ.get(cls.PREFIX + f.name.upper())
            # empty is unset: the regression clears VFMIG_SEED that way, and cocotb's
            # runner lets the caller's environment win over the knobs it was given
            if raw:
                setattr(knobs, f.name, type(getattr(knobs, f.name))(raw))
        return knobs

    def to_env(self) -> dict[str, str]:
        return {self.PREFIX + k.upper(): str(v) for k, v in asdict(self).items()}

    def link_faults(self):
        from .link import link_faults
        return link_faults(self.ber, self.burst_rate, self.drop_rate, self.dup_rate,
                           self.delay_rate, self.link_down)

    def step_link_downs(self, commit: bool = False) -> dict[int, int]:
        """``link_down_step`` (or ``link_down_commit``) as {plan step index: cycles}."""
        from .link import parse_windows
        return dict(parse_windows(self.link_down_commit if commit else self.link_down_step))


LINK_SUMMARY = {"flits": ("tx_flits",), "packets": ("tx_packets",),
                "replays": ("tx_replays",), "naks": ("naks_sent",),
                "crc_errors": ("rx_crc_errors",),
                "dropped_malformed": ("mig_malformed", "io_malformed")}


def link_summary(counters: dict[str, dict[str, int]]) -> dict[str, int]:
    """The report's "link" figures, both directions summed, from ``Vmm.link_counters``."""
    return {name: sum(port[stat] for port in counters.values() for stat in stats)
            for name, stats in LINK_SUMMARY.items()}


# ---------------------------------------------------------------- the bus functional model
class VmBfm:
    """Drives ``req`` and samples ``resp``/``irq`` of the system top, once per cycle.

    ``send`` queues a request (waits while ``depth`` are queued); ``on_issued`` is called at
    the clock edge a request is accepted, ``on_response``/``on_interrupt`` for every beat."""

    def __init__(self, dut, config: SystemConfig, rng: random.Random, idle_prob: float = 0.0,
                 resp_backpressure: float = 0.0, irq_backpressure: float = 0.0, depth: int = 2):
        self.dut, self.config, self.rng = dut, config, rng
        self.req_layout = system_request_layout(config)
        self.resp_layout = system_response_layout(config)
        self.irq_layout = system_irq_layout(config)
        self.idle_prob = idle_prob
        self.resp_bp, self.irq_bp = resp_backpressure, irq_backpressure
        self.depth = depth
        self.tag_limit = (1 << config.tag_bits) - 1   # in flight per VF, so tags stay unique
        self.on_issued = self.on_response = self.on_interrupt = None
        self.irq_check = None    # a tb.system.irq_check.SystemIrqCheck, fed every cycle
        self._queue: deque[VmRequest] = deque()
        self._space = Event()
        self._empty = Event()
        self._empty.set()
        self.inflight: Counter = Counter()
        self.cycles = 0
        self.stall_cycles = 0   # a request was offered and not taken
        self.irq_paused_until = 0   # the VMs take no interrupt before this cycle
        self.irq_paused_cycles = 0  # cycles a pause held them
        dut.req__valid.value = 0
        dut.resp__ready.value = 0
        dut.irq__ready.value = 0

    def _trace_fire_mask(self) -> int:
        from hdl.system import irq_trace_layout
        layout = irq_trace_layout(self.config)
        return 1 << layout["raised"].offset | 1 << layout["command"].offset

    async def reset(self, cycles: int = 5) -> None:
        dut = self.dut
        dut.rst.value = 1
        for _ in range(cycles):
            await RisingEdge(dut.clk)
        dut.rst.value = 0
        await RisingEdge(dut.clk)

    def start(self):
        import cocotb
        return cocotb.start_soon(self._run())

    async def send(self, req: VmRequest) -> None:
        while len(self._queue) >= self.depth:
            self._space.clear()
            await self._space.wait()
        self._queue.append(req)
        self._empty.clear()

    def pause_interrupts(self, cycles: int) -> None:
        """The VMs take no interrupt for the next ``cycles`` (>= 0) cycles (from now on)."""
        self.irq_paused_until = max(self.irq_paused_until, self.cycles + cycles)

    @property
    def queued(self) -> int:
        return len(self._queue)

    async def _run(self) -> None:
        dut, rng = self.dut, self.rng
        clk = dut.clk
        req_valid, req_ready, req_payload = dut.req__valid, dut.req__ready, dut.req__payload
        resp_valid, resp_ready, resp_payload = dut.resp__valid, dut.resp__ready, dut.resp__payload
        irq_valid, irq_ready, irq_payload = dut.irq__valid, dut.irq__ready, dut.irq__payload
        trace = dut.irq_trace
        trace_fired = self._trace_fire_mask()
        edge, settle = RisingEdge(clk), ReadOnly()
        driving: VmRequest | None = None
        resp_rdy = irq_rdy = 1
        resp_ready.value = irq_ready.value = 1
        while True:
            await settle
            # what is sampled now is what the DUT's registers take at the coming edge
            req_fire = driving is not None and req_ready.value == 1
            try:
                resp_word = (int(resp_payload.value) if resp_rdy and resp_valid.value == 1
                             else None)
                irq_word = int(irq_payload.value) if irq_rdy and irq_valid.value == 1 else None
                trace_word = int(trace.value) if self.irq_check else 0
            except ValueError:
                raise AssertionError(f"X/Z bits in a valid beat: resp {resp_payload.value}, "
                                     f"irq {irq_payload.value}, irq_trace {trace.value}"
                                     ) from None
            await edge
            cycle = self.cycles
            self.cycles += 1
            if trace_word & trace_fired:
                self.irq_check.trace(cycle, trace_word)
            if req_fire:
                self._queue.popleft()
                self.inflight[driving.vf] += 1
                if self.on_issued:
                    self.on_issued(driving)
                driving = None
                self._space.set()
                if not self._queue:
                    self._empty.set()
            elif driving is not None:
                self.stall_cycles += 1
            if resp_word is not None:
                fields_ = unpack(self.resp_layout, resp_word)
                resp = VmResponse(fields_["vf"], fields_["tag"], fields_["data"], fields_["error"])
                self.inflight[resp.vf] -= 1
                if self.on_response:
                    self.on_response(resp)
            if irq_word is not None:
                irq = VmInterrupt(**unpack(self.irq_layout, irq_word))
                if self.irq_check:
                    self.irq_check.delivered(cycle, irq)
                if self.on_interrupt:
                    self.on_interrupt(irq)
            if driving is None:
                head = self._queue[0] if self._queue else None
                if (head is not None and self.inflight[head.vf] < self.tag_limit
                        and not (self.idle_prob and rng.random() < self.idle_prob)):
                    driving = head
                    req_payload.value = pack(self.req_layout, {
                        "vf": head.vf, "op": int(head.op), "addr": head.addr,
                        "data": head.data, "tag": head.tag})
                    req_valid.value = 1
                else:
                    req_valid.value = 0
            if self.resp_bp:
                rdy = 0 if rng.random() < self.resp_bp else 1
                if rdy != resp_rdy:
                    resp_ready.value = resp_rdy = rdy
            if self.irq_bp or self.irq_paused_until:
                paused = self.cycles < self.irq_paused_until
                self.irq_paused_cycles += paused
                rdy = 0 if paused or (self.irq_bp and rng.random() < self.irq_bp) else 1
                if rdy != irq_rdy:
                    irq_ready.value = irq_rdy = rdy


# ---------------------------------------------------------------- pyuvm components
class VmRequestItem(uvm_sequence_item):
    def __init__(self, req: VmRequest):
        super().__init__(f"req_vf{req.vf}_{req.tag}")
        self.req = req


class RequestListSeq(ItemListSeq):
    """Sends a fixed list of ``VmRequest``s (MSI-X programming, image read-back)."""
    ITEM = VmRequestItem


class RandomTrafficSeq(uvm_sequence):
    """Random VM traffic on every VF until ``stop()``."""

    def __init__(self, name: str, generator: TrafficGenerator):
        super().__init__(name)
        self.generator = generator
        self._stop = False
        self.sent = 0

    def stop(self) -> None:
        self._stop = True

    async def body(self):
        while not self._stop:
            item = VmRequestItem(self.generator.random_request())
            await self.start_item(item)
            await self.finish_item(item)
            self.sent += 1


class VmDriver(BfmDriver):
    async def drive(self, item):
        await self.bfm.send(item.req)


class VmMonitor(BfmMonitor):
    """Publishes accepted requests, responses and interrupts (sampled by the BFM)."""
    HOOKS = {"on_issued": "issued_ap", "on_response": "resp_ap", "on_interrupt": "irq_ap"}


class VmTrafficAgent(SequencedAgent):
    DRIVER = VmDriver
    MONITOR = VmMonitor


class VmmAgent(uvm_component):
    """The VMM: the register driver and the migration procedure."""

    def build_phase(self):
        dut = ConfigDB().get(self, "", "DUT")
        config = ConfigDB().get(self, "", "CONFIG")
        progress = ConfigDB().get(self, "", "PROGRESS")
        self.bus = control_bus(dut)
        self.vmm = Vmm(self.bus, config, self.logger, progress)


class SystemScoreboard(uvm_scoreboard):
    def build_phase(self):
        config = ConfigDB().get(self, "", "CONFIG")
        self.model = Scoreboard(config.layout, config.n_vfs)
        self.issued_export = uvm_subscriber.uvm_AnalysisImp("issued_export", self,
                                                            self.model.issued)
        self.resp_export = uvm_subscriber.uvm_AnalysisImp("resp_export", self,
                                                          self.model.response)
        self.irq_export = uvm_subscriber.uvm_AnalysisImp("irq_export", self,
                                                         self.model.interrupt)
        self.irq_check = SystemIrqCheck(config)
        ConfigDB().get(self, "", "BFM").irq_check = self.irq_check

    def check_phase(self):
        totals = self.model.finish()
        for text in self.model.messages + self.irq_check.messages:
            self.logger.error(text)
        self.logger.info("scoreboard: %s", totals.to_dict())


class SystemEnv(uvm_env):
    def build_phase(self):
        self.traffic = VmTrafficAgent("traffic", self)
        self.vmm_agent = VmmAgent("vmm", self)
        self.scoreboard = SystemScoreboard("scoreboard", self)

    def connect_phase(self):
        mon = self.traffic.monitor
        mon.issued_ap.connect(self.scoreboard.issued_export)
        mon.resp_ap.connect(self.scoreboard.resp_export)
        mon.irq_ap.connect(self.scoreboard.irq_export)


__all__ = ["Knobs", "VmBfm", "link_summary", "SystemEnv", "RequestListSeq", "RandomTrafficSeq",
           "config_to_json"]
