"""The source role of one device's migration engine: VFIO requests walked arc by arc, each
arc's action (quiesce, open a migration, stop-copy, abort, commit) performed before it."""

from __future__ import annotations

from amaranth import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from model.config import SystemConfig
from model.protocol import MsgType, Reason
from model.regmap import DowntimePhase, ErrorCode
from model.vfio import DeviceState

from ..formats import bits_for
from ..mig_copier import ControlMessage, CopyMode
from .vf_table import in_states, table_write_layout
from .walker import VfioWalker

S = DeviceState
ROLLBACK_TO = (S.RUNNING, S.RUNNING_P2P, S.RESUMING)  # arcs that abandon an outgoing copy


def status_layout(n_vfs: int) -> data.StructLayout:
    """A STATUS.error/reason update for one VF."""
    return data.StructLayout({"vf": bits_for(n_vfs), "error": 4, "reason": 4})


def done_layout(n_vfs: int) -> data.StructLayout:
    """How an outgoing migration ended."""
    return data.StructLayout({"vf": bits_for(n_vfs), "committed": 1, "rounds": 8, "words": 32})


class SourceWalker(wiring.Component):
    """Take VFIO requests for the VFs served here and walk them, one at a time.

    A request (``ctl_state_we``) is checked by a :class:`VfioWalker` for ``config.flags``:
    an invalid one is answered INVALID_TRANSITION and changes nothing.  Each arc's action
    runs before the state moves: RUNNING* -> PRE_COPY* (or STOP -> STOP_COPY) opens a
    migration with MIG_BEGIN and starts the copier; -> STOP drains the VF (its requests
    held, its slot idle); PRE_COPY* -> STOP_COPY drains it, copies the residual and sends
    SWITCHOVER with the image digest; an arc back to RUNNING/RUNNING_P2P/RESUMING during a
    copy sends ABORT.  ``ctl_commit`` in STOP after SWITCHOVER sends COMMIT and hands the VF
    over on COMMIT_ACK; a target ABORT (``remote_abort``) rolls the VF back to RUNNING.

    Members
    -------
    ctl_vf, ctl_state_we, ctl_state, ctl_commit : In   control (pulses)
    ctl_status : Out(stream of status_layout)    the answer to a control write, at once
    walk_status : Out(stream of status_layout)   how a walk ended (rejected, aborted, ...)
    done : Out(stream of done_layout)    one-cycle event: the outgoing migration ended
    state : In(ArrayLayout(3, n_vfs)); here : In(n_vfs); slot : In(ArrayLayout)
        the per-VF table; ``src_wr`` : Out(table_write_layout) writes it
    idle : In(n_slots)     the slot has no request in service; digest : In   image digests
    copy_start, copy_mode, copy_stop : Out; copy_busy, copy_rounds, copy_words : In;
    msg : Out(stream of ControlMessage)    the copier
    ev_accept, ev_reject, ev_commit_ack, ev_abort_ack, ev_reason, remote_abort,
    remote_reason : In    the receiver's events for the outgoing migration
    src_active, src_opening, src_vf, src_slot, switched : Out   the outgoing migration
        (accepted; MIG_BEGIN sent; its VF and slot; SWITCHOVER sent)
    draining, wvf : Out    the walked VF, and whether it is being drained now
    busy : Out   a walk is under way (a request written now is answered BUSY)
    phase, phase_vf : Out   the :class:`DowntimePhase` of VF ``phase_vf`` (which part of a
        stop-copy it is in; RELEASE when the walker is at none); read only while it is held

    Latency: a request is answered the cycle it is written; the first arc is examined the
    next cycle; an arc without an action takes one cycle.
    """

    def __init__(self, config: SystemConfig, n_slots: int):
        self.config, self.n_slots = config, n_slots
        n_vfs = config.n_vfs
        vf_bits, slot_bits = bits_for(n_vfs), bits_for(n_slots)
        status = stream.Signature(status_layout(n_vfs))
        super().__init__({
            "ctl_vf": In(vf_bits), "ctl_state_we": In(1), "ctl_state": In(3),
            "ctl_commit": In(1), "ctl_status": Out(status), "walk_status": Out(status),
            "done": Out(stream.Signature(done_layout(n_vfs))),
            "state": In(data.ArrayLayout(3, n_vfs)), "here": In(n_vfs),
            "slot": In(data.ArrayLayout(slot_bits, n_vfs)),
            "src_wr": Out(table_write_layout(n_vfs, n_slots)),
            "idle": In(n_slots), "digest": In(data.ArrayLayout(32, n_slots)),
            "copy_start": Out(1), "copy_mode": Out(2), "copy_stop": Out(1),
            "copy_busy": In(1), "copy_rounds": In(8), "copy_words": In(32),
            "msg": Out(stream.Signature(ControlMessage)),
            "ev_accept": In(1), "ev_reject": In(1), "ev_commit_ack": In(1),
            "ev_abort_ack": In(1), "ev_reason": In(4),
            "remote_abort": In(1), "remote_reason": In(4),
            "src_active": Out(1), "src_opening": Out(1), "src_vf": Out(vf_bits),
            "src_slot": Out(slot_bits), "switched": Out(1),
            "draining": Out(1), "wvf": Out(vf_bits), "busy": Out(1),
            "phase": Out(3), "phase_vf": Out(vf_bits),
        })

    # ------------------------------------------------------------------ helpers
    def _phase(self, m, phase):
        """In this state the walked VF's hold waits for ``phase``."""
        m.d.comb += [self.phase.eq(phase), self.phase_vf.eq(self.wvf)]

    def _send(self, m, type_, arg=0, reason_=0):
        """Offer a header-only message through the copier; True once it is taken."""
        m.d.comb += [self.msg.valid.eq(1), self.msg.payload.type.eq(type_),
                     self.msg.payload.arg.eq(arg), self.msg.payload.reason.eq(reason_)]
        return self.msg.ready

    def _finish(self, m, committed):
        m.d.comb += [self.done.valid.eq(1), self.done.payload.vf.eq(self.src_vf),
                     self.done.payload.committed.eq(committed),
                     self.done.payload.rounds.eq(self.copy_rounds),
                     self.done.payload.words.eq(self.copy_words)]
        m.d.sync += [self.src_active.eq(0), self.switched.eq(0)]

    def _fail(self, m, vf, code, why=Reason.NONE, port=None):
        """Report STATUS.error/reason for ``vf`` (on ``walk_status`` unless given)."""
        port = port if port is not None else self.walk_status
        m.d.comb += [port.valid.eq(1), port.payload.vf.eq(vf),
                     port.payload.error.eq(code), port.payload.reason.eq(why)]

    def _answer(self, m, code):
        self._fail(m, self.ctl_vf, code, port=self.ctl_status)

    def _write(self, m, vf, **fields):
        m.d.comb += self.src_wr.vf.eq(vf)
        for name, value in fields.items():
            m.d.comb += [getattr(self.src_wr, f"{name}_we").eq(1),
                         getattr(self.src_wr, name).eq(value)]

    def _take_arc(self, m):
        """The walked VF enters the next state of its walk (the arc's action is done)."""
        m.d.comb += self.vfio.arc.ready.eq(1)
        self._write(m, self.wvf, state=self.vfio.arc.payload.dst)

    def _walk(self, m, current, target):
        """Start a walk toward ``target``; ``vfio.error`` says whether it is invalid."""
        m.d.comb += [self.vfio.request.valid.eq(1),
                     self.vfio.request.payload.current.eq(current),
                     self.vfio.request.payload.target.eq(target)]

    # ------------------------------------------------------------------ elaboration
    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        m.submodules.vfio = self.vfio = VfioWalker(cfg.flags)
        self.arc_next = Signal(3)       # the state the current arc leads to
        self.begin_mode = Signal(2)
        self.timer = Signal(range(cfg.timeout_cycles + 1))
        self.abort_pending = Signal()   # the target aborted the outgoing VF
        self.abort_reason = Signal(4)
        self.mine = self.src_active & (self.src_vf == self.wvf)

        # After SWITCHOVER the outgoing VF waits for the VMM's COMMIT whatever the walker
        # does meanwhile; the states of a stop-copy override this below (_phase).
        waiting = self.src_active & self.switched
        m.d.comb += [self.phase.eq(Mux(waiting, DowntimePhase.SWITCHOVER, DowntimePhase.RELEASE)),
                     self.phase_vf.eq(Mux(waiting, self.src_vf, self.wvf))]
        with m.FSM(name="walker"):
            self._idle(m)
            self._step(m)
            self._open(m)
            self._stop_copy(m)
            self._abort(m)
            self._commit(m)

        # A request or commit arriving while the walker is busy is refused, not queued.
        with m.If(self.busy & (self.ctl_state_we | self.ctl_commit)
                  & self.here.bit_select(self.ctl_vf, 1)):
            self._answer(m, ErrorCode.BUSY)
        # Set after the ROLLBACK clear: an ABORT taken in that cycle is kept.
        with m.If(self.remote_abort):
            m.d.sync += [self.abort_pending.eq(1), self.abort_reason.eq(self.remote_reason)]
        return m

    def _idle(self, m):
        ctl_vf = self.ctl_vf
        with m.State("IDLE"):
            with m.If(self.abort_pending):
                m.d.sync += self.wvf.eq(self.src_vf)
                m.next = "ROLLBACK"
            with m.Elif(self.ctl_state_we & self.here.bit_select(ctl_vf, 1)):
                self._walk(m, self.state[ctl_vf], self.ctl_state)
                with m.If(self.ctl_state == self.state[ctl_vf]):
                    self._write(m, ctl_vf, requested=self.ctl_state)
                with m.Elif(self.vfio.error):
                    self._answer(m, ErrorCode.INVALID_TRANSITION)
                with m.Else():
                    m.d.sync += self.wvf.eq(ctl_vf)
                    self._write(m, ctl_vf, requested=self.ctl_state)
                    self._answer(m, ErrorCode.NONE)
                    m.next = "STEP"
            with m.Elif(self.ctl_commit & self.here.bit_select(ctl_vf, 1)):
                with m.If(self.src_active & (self.src_vf == ctl_vf) & self.switched
                          & (self.state[ctl_vf] == S.STOP)):
                    m.d.sync += self.wvf.eq(ctl_vf)
                    m.next = "SEND_COMMIT"
                with m.Else():
                    self._answer(m, ErrorCode.COMMIT_REFUSED)

    def _step(self, m):
        """Examine the next arc: take it, or enter the state that performs its action."""
        cur, nxt = self.vfio.arc.payload.src, self.vfio.arc.payload.dst
        with m.State("STEP"):
            m.d.comb += self.busy.eq(1)
            m.d.sync += [self.arc_next.eq(nxt), self.timer.eq(0)]
            with m.If(~self.vfio.busy):
                m.next = "IDLE"
            with m.Elif(self.mine & in_states(nxt, ROLLBACK_TO)):
                m.next = "ABORT_STOP"
            with m.Elif(in_states(cur, (S.RUNNING, S.RUNNING_P2P))
                        & in_states(nxt, (S.PRE_COPY, S.PRE_COPY_P2P))):
                self._begin_unless_busy(m, CopyMode.PRECOPY)
            with m.Elif((nxt == S.STOP) & in_states(cur, (S.RUNNING, S.RUNNING_P2P))):
                m.next = "DRAIN"
            with m.Elif((nxt == S.STOP_COPY) & in_states(cur, (S.PRE_COPY, S.PRE_COPY_P2P))):
                m.next = "DRAIN"
            with m.Elif((nxt == S.STOP_COPY) & (cur == S.STOP) & ~self.mine):
                self._begin_unless_busy(m, CopyMode.FULL)
            with m.Else():
                self._take_arc(m)

    def _begin_unless_busy(self, m, mode):
        # One outgoing migration per device: a second one is refused.
        with m.If(self.src_active):
            self._fail(m, self.wvf, ErrorCode.BUSY)
            m.next = "IDLE"
        with m.Else():
            m.d.sync += self.begin_mode.eq(mode)
            m.next = "BEGIN"

    def _open(self, m):
        """MIG_BEGIN and its answer."""
        cfg, timer = self.config, self.timer
        with m.State("BEGIN"):
            m.d.comb += self.busy.eq(1)
            self._phase(m, DowntimePhase.COPY)   # held only in a stop-copy without pre-copy
            m.d.sync += [self.src_vf.eq(self.wvf), self.src_slot.eq(self.slot[self.wvf])]
            with m.If(self._send(m, MsgType.BEGIN, cfg.layout.image_words)):
                m.d.sync += [self.src_opening.eq(1), timer.eq(0)]
                m.next = "WAIT_ACCEPT"
        with m.State("WAIT_ACCEPT"):
            m.d.comb += self.busy.eq(1)
            self._phase(m, DowntimePhase.COPY)
            m.d.sync += timer.eq(timer + 1)
            with m.If(self.ev_accept):
                m.d.sync += [self.src_opening.eq(0), self.src_active.eq(1),
                             self.switched.eq(0)]
                m.d.comb += [self.copy_start.eq(1), self.copy_mode.eq(self.begin_mode)]
                with m.If(self.begin_mode == CopyMode.PRECOPY):
                    self._take_arc(m)
                    m.next = "STEP"
                with m.Else():
                    m.d.sync += self.draining.eq(1)
                    m.next = "WAIT_COPY"
            with m.Elif(self.ev_reject):
                m.d.sync += self.src_opening.eq(0)
                self._fail(m, self.wvf, ErrorCode.REJECTED, self.ev_reason)
                m.next = "IDLE"
            with m.Elif(timer == cfg.timeout_cycles):
                m.d.sync += self.src_opening.eq(0)
                self._fail(m, self.wvf, ErrorCode.TIMEOUT, Reason.TIMEOUT)
                m.next = "ABANDON"
        with m.State("ABANDON"):
            # The MIG_BEGIN (or its answer) may only be late, not lost (a link that was
            # down): tell the target to discard what it may have opened. Its ABORT_ACK
            # finds no migration here and is ignored.
            m.d.comb += self.busy.eq(1)
            with m.If(self._send(m, MsgType.ABORT, 0, Reason.TIMEOUT)):
                m.next = "IDLE"

    def _stop_copy(self, m):
        """Drain the VF, copy the residual (or the whole image), send SWITCHOVER."""
        with m.State("DRAIN"):
            # Hold the VF's requests, stop its pre-copy (not another VF's) at a chunk
            # boundary, and wait for the request in service to finish.
            m.d.comb += [self.busy.eq(1), self.copy_stop.eq(self.mine)]
            m.d.sync += self.draining.eq(1)
            self._phase(m, DowntimePhase.DRAIN)
            with m.If(self.draining & self.idle.bit_select(self.slot[self.wvf], 1)
                      & ~(self.mine & self.copy_busy)):
                with m.If(self.arc_next == S.STOP):
                    self._take_arc(m)
                    m.d.sync += self.draining.eq(0)
                    m.next = "STEP"
                with m.Else():
                    m.d.comb += [self.copy_start.eq(1), self.copy_mode.eq(CopyMode.RESIDUAL)]
                    m.next = "WAIT_COPY"
        with m.State("WAIT_COPY"):
            m.d.comb += self.busy.eq(1)
            self._phase(m, DowntimePhase.COPY)
            with m.If(~self.copy_busy):
                m.next = "SEND_SWITCHOVER"
        with m.State("SEND_SWITCHOVER"):
            m.d.comb += self.busy.eq(1)
            self._phase(m, DowntimePhase.SWITCHOVER)
            with m.If(self._send(m, MsgType.SWITCHOVER, self.digest[self.src_slot])):
                self._take_arc(m)  # into STOP_COPY
                m.d.sync += [self.switched.eq(1), self.draining.eq(0)]
                m.next = "STEP"

    def _abort(self, m):
        """An arc back before commit: stop the copy, ABORT, wait for ABORT_ACK."""
        timer = self.timer
        with m.State("ABORT_STOP"):
            m.d.comb += [self.busy.eq(1), self.copy_stop.eq(1)]
            with m.If(~self.copy_busy):
                m.next = "SEND_ABORT"
        with m.State("SEND_ABORT"):
            m.d.comb += self.busy.eq(1)
            with m.If(self._send(m, MsgType.ABORT, 0, Reason.REQUESTED)):
                m.d.sync += timer.eq(0)
                m.next = "WAIT_ABORT_ACK"
        with m.State("WAIT_ABORT_ACK"):
            m.d.comb += self.busy.eq(1)
            m.d.sync += timer.eq(timer + 1)
            with m.If(self.ev_abort_ack | (timer == self.config.timeout_cycles)):
                self._finish(m, committed=0)
                with m.If(self.ev_abort_ack):
                    self._fail(m, self.wvf, ErrorCode.ABORTED, Reason.REQUESTED)
                with m.Else():
                    self._fail(m, self.wvf, ErrorCode.TIMEOUT, Reason.TIMEOUT)
                self._take_arc(m)
                m.next = "STEP"

    def _commit(self, m):
        """COMMIT and its answer; a target's ABORT rolls the VF back."""
        with m.State("SEND_COMMIT"):
            m.d.comb += self.busy.eq(1)
            self._phase(m, DowntimePhase.COMMIT)
            with m.If(self._send(m, MsgType.COMMIT)):
                m.d.sync += self.timer.eq(0)
                m.next = "WAIT_COMMIT_ACK"
        with m.State("WAIT_COMMIT_ACK"):
            # No timeout here: once COMMIT is sent the target decides (it may already
            # serve the VF), and rolling back on silence would leave the VF running on
            # both devices. The link delivers COMMIT and its answer once it is up again;
            # until then the VF's requests wait at the router (consistency first).
            m.d.comb += self.busy.eq(1)
            self._phase(m, DowntimePhase.COMMIT)
            with m.If(self.ev_commit_ack):
                self._finish(m, committed=1)
                self._write(m, self.wvf, here=0, present=0)
                m.next = "IDLE"
            with m.Elif(self.abort_pending):
                m.next = "ROLLBACK"
        with m.State("ROLLBACK"):
            # The target refused the image (digest/CRC) or went silent: acknowledge,
            # and walk the VF back to RUNNING here, where its image never changed.
            m.d.comb += [self.busy.eq(1), self.copy_stop.eq(1)]
            with m.If(~self.copy_busy & self._send(m, MsgType.ABORT_ACK)):
                self._finish(m, committed=0)
                with m.If(self.abort_reason == Reason.TIMEOUT):
                    self._fail(m, self.wvf, ErrorCode.TIMEOUT, Reason.TIMEOUT)
                with m.Else():
                    self._fail(m, self.wvf, ErrorCode.ABORTED, self.abort_reason)
                self._walk(m, self.state[self.wvf], S.RUNNING)
                self._write(m, self.wvf, requested=S.RUNNING)
                m.d.sync += [self.abort_pending.eq(0), self.draining.eq(0)]
                m.next = "STEP"
