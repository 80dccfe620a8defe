"""The cycle-level port bench shared by amaranth.sim and cocotb: ``PortBench`` drives the
remapper's ports cycle by cycle from the stimulus and feeds the scoreboard."""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass

from model.irq_remap import (
    RemapCommand,
    RemapOp,
    RemapParams,
)

from .configs import HW_COUNTERS, layouts, pack, unpack
from .scoreboard import IrqScoreboard
from .stimulus import RaiseEvent, Step, Traffic


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


__all__ = ["BenchKnobs", "PortBench"]
