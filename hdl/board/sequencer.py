"""The self-test's migration sequencer: moves VFs as the VMM does, through the register map.

Each move is the VMM's sequence (docs/regmap.md): request PRE_COPY, wait until the walk is
done and the pre-copy converged, request STOP_COPY, then STOP, check ready-to-commit, write
COMMIT, wait until LOCATION names the other device and the VF runs there. The sequence is a
small program (``MOVE_PROGRAM``) of register writes and polls run against an
``AxiLiteMaster``; a poll that sees an error bit, a bus error, or more than
``poll_limit`` reads fails the self-test with the step and VF latched.

The order of moves is VF 0 out to the other device and back, then VF 1, and so on: at most
one VF is away from the host at a time, so the offload device's slots never run out.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import Array, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from model.common import check_int
from model.regmap import (
    CONTROL_COMMIT,
    STATUS_BUSY,
    STATUS_CONVERGED,
    STATUS_ERROR,
    STATUS_READY_TO_COMMIT,
    VF,
    VF_BASE,
    VF_STRIDE,
)
from model.vfio import DeviceState

from .axil_master import register_command_layout, register_result_layout

__all__ = ["MOVE_PROGRAM", "MigrationSequencer", "Step"]

ERROR_BITS = ((1 << STATUS_ERROR[1]) - 1) << STATUS_ERROR[0]
BUSY = 1 << STATUS_BUSY


@dataclass(frozen=True)
class Step:
    """One register access of a move: a write of ``value``, or a poll that reads ``reg``
    until ``reg & mask == expect`` (``expect`` XOR the target device when ``to_target``) and
    fails on ``reg & fail_mask``; with ``watch_status`` every other read is of STATUS, which
    fails the poll on an error (a refused commit leaves LOCATION as it was). A write's
    ``mask`` is unused."""
    reg: str
    write: bool = False
    value: int = 0
    mask: int = 0
    expect: int = 0
    fail_mask: int = 0
    to_target: bool = False
    watch_status: bool = False


def _walk(state: DeviceState) -> tuple[Step, Step]:
    return (Step("REQUESTED_STATE", write=True, value=int(state)),
            Step("STATUS", mask=BUSY, expect=0, fail_mask=ERROR_BITS))


MOVE_PROGRAM = (
    *_walk(DeviceState.PRE_COPY),
    Step("STATUS", mask=1 << STATUS_CONVERGED, expect=1 << STATUS_CONVERGED,
         fail_mask=ERROR_BITS),
    *_walk(DeviceState.STOP_COPY),
    *_walk(DeviceState.STOP),
    Step("STATUS", mask=1 << STATUS_READY_TO_COMMIT, expect=1 << STATUS_READY_TO_COMMIT,
         fail_mask=ERROR_BITS),
    Step("CONTROL", write=True, value=1 << CONTROL_COMMIT),
    # LOCATION bit 0 is the device: 0 the host, 1 the offload device.
    Step("LOCATION", mask=1, expect=0, to_target=True, watch_status=True),
    Step("DEVICE_STATE", mask=7, expect=int(DeviceState.RUNNING)),
)


class MigrationSequencer(wiring.Component):
    """Moves VF 0 out and back, then VF 1, ...: ``2 * n_vfs`` moves a round, while ``go``.

    Parameters
    ----------
    n_vfs : int
    poll_limit : int
        Reads a poll may take before the self-test fails (a hung migration).

    Members
    -------
    regs_cmd : Out(stream of register_command_layout); regs_result : In(...)
        to an ``AxiLiteMaster`` on the system's control port
    go : In(1)          start the next move (sampled between moves)
    moves : Out(16)     moves committed (wraps)
    moved : Out(1)      pulse: a move committed this cycle (``moves`` counts it next cycle)
    moving : Out(1)     a move is under way
    failed : Out(1)     sticky; ``fail_step`` (index in ``MOVE_PROGRAM``) and ``fail_vf`` say
        where; ``fail_code`` the register value or bus response that failed it
    """

    def __init__(self, n_vfs: int, poll_limit: int = 1 << 20):
        check_int("MigrationSequencer", "n_vfs", n_vfs, 1, 255)
        check_int("MigrationSequencer", "poll_limit", poll_limit, 1, 1 << 30)
        self.n_vfs = n_vfs
        self.poll_limit = poll_limit
        super().__init__({
            "regs_cmd": Out(stream.Signature(register_command_layout())),
            "regs_result": In(stream.Signature(register_result_layout)),
            "go": In(1), "moves": Out(16), "moved": Out(1), "moving": Out(1), "failed": Out(1),
            "fail_step": Out(8), "fail_vf": Out(8), "fail_code": Out(32),
        })

    def _program_rom(self):
        layout = data.StructLayout({"offset": 6, "write": 1, "value": 32, "mask": 32,
                                    "expect": 32, "fail_mask": 32, "to_target": 1,
                                    "watch_status": 1})
        rows = [Const({"offset": VF[s.reg], "write": s.write, "value": s.value,
                       "mask": s.mask, "expect": s.expect, "fail_mask": s.fail_mask,
                       "to_target": s.to_target, "watch_status": s.watch_status}, layout)
                for s in MOVE_PROGRAM]
        return Array(rows)

    def elaborate(self, platform):
        m = Module()
        rom = self._program_rom()
        pc = Signal(range(len(MOVE_PROGRAM)))
        step = rom[pc]
        vf = Signal(range(self.n_vfs))
        back = Signal()           # the return leg: the VF goes home to the host
        polls = Signal(range(self.poll_limit + 1))
        watching = Signal()       # this read is the STATUS check of a watch_status poll
        cmd, res = self.regs_cmd.payload, self.regs_result.payload
        assert VF_STRIDE == 1 << 6
        offset = Mux(watching, VF["STATUS"], step.offset)
        m.d.comb += [cmd.addr.eq(VF_BASE + (vf << 6) + offset),
                     cmd.write.eq(step.write), cmd.data.eq(step.value)]
        expect = step.expect ^ (step.to_target & ~back)
        with m.FSM() as fsm:
            with m.State("IDLE"):
                with m.If(self.go & ~self.failed):
                    m.d.sync += [pc.eq(0), polls.eq(0)]
                    m.next = "ACCESS"
            with m.State("ACCESS"):
                m.d.comb += [self.regs_cmd.valid.eq(1), self.regs_result.ready.eq(1)]
                with m.If(self.regs_result.valid):
                    self._check(m, step, res, expect, pc, polls, vf, back, watching)
            with m.State("FAILED"):
                pass   # until reset: the LEDs and the report show where it failed
        m.d.comb += self.moving.eq(fsm.ongoing("ACCESS"))
        return m

    def _check(self, m, step, res, expect, pc, polls, vf, back, watching):
        """After one access: fail, poll again, go on to the next step, or end the move."""
        done = ~watching & (step.write | ((res.data & step.mask) == expect))
        fail_mask = Mux(watching, ERROR_BITS, step.fail_mask)
        bad = (res.resp != 0) | ((res.data & fail_mask) != 0) | (polls == self.poll_limit)
        m.d.sync += watching.eq(step.watch_status & ~watching & ~done)
        with m.If(bad):
            m.d.sync += [self.failed.eq(1), self.fail_step.eq(pc), self.fail_vf.eq(vf),
                         self.fail_code.eq(res.data)]
            m.next = "FAILED"
        with m.Elif(~done):
            m.d.sync += polls.eq(polls + 1)
        with m.Elif(pc != len(MOVE_PROGRAM) - 1):
            m.d.sync += [pc.eq(pc + 1), polls.eq(0)]
        with m.Else():
            m.d.comb += self.moved.eq(1)
            m.d.sync += [self.moves.eq(self.moves + 1), back.eq(~back)]
            with m.If(back):
                m.d.sync += vf.eq(Mux(vf == self.n_vfs - 1, 0, vf + 1))
            m.next = "IDLE"
