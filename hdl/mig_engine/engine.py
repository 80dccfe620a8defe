"""The per-device migration engine: VFIO v2 state machines, source and target roles."""

from amaranth import Array, Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from model.config import Device, SystemConfig
from model.protocol import Malformed, MsgType, Reason
from model.regmap import ErrorCode
from model.vfio import DeviceState

from ..formats import ChunkBeat, DmaStatus, bits_for, descriptor_layout
from ..mig_copier import CopyMode, MigCopier
from ..migproto import MigProtoDecoder, MigProtoEncoder
from ..packet_arbiter import PacketArbiter
from .walker import VfioWalker

COUNTER_BITS = 16  # width of the dropped-message counters (saturating)

S = DeviceState
SERVING = (S.RUNNING, S.RUNNING_P2P, S.PRE_COPY, S.PRE_COPY_P2P)  # the VF answers requests
INTERRUPTING = (S.RUNNING, S.PRE_COPY)                          # the VF may raise interrupts
ROLLBACK_TO = (S.RUNNING, S.RUNNING_P2P, S.RESUMING)  # arcs that abandon an outgoing copy


def _in(value, states):
    return value.matches(*(int(s) for s in states))


class MigEngine(wiring.Component):
    """Migration engine of one device (``device``): one outgoing and one incoming VF at a time.

    *VFIO*: every VF placed on this device has a VFIO migration v2 device state
    (DESIGN §4).  A request on the control port (``ctl_*``) for a VF that lives here is
    checked against the arc table resolved for ``config.flags`` — an invalid one sets the
    VF's error to INVALID_TRANSITION and changes nothing — then walked arc by arc; each arc
    performs its action (quiesce, hold, open a migration, stop-copy, abort) before the state
    moves.  P2P states hold the VF's interrupts (they go pending in the PBA); STOP,
    STOP_COPY and RESUMING also hold its requests at the router (``hold``) and drain it.

    *Source role*: PRE_COPY (or STOP_COPY straight from STOP) opens a migration to the other
    device with MIG_BEGIN; pre-copy rounds and the stop-copy residual are streamed by
    :class:`MigCopier`; STOP_COPY ends with SWITCHOVER carrying the image digest; COMMIT
    (``ctl_commit`` in STOP) hands the VF over when COMMIT_ACK returns.  Arcs back to
    RUNNING/RUNNING_P2P/RESUMING before commit send ABORT: the VF stays here, image intact.

    *Target role*: MIG_BEGIN allocates a free slot (or MIG_REJECT: no slot, busy,
    unsupported); STATE_DATA is written through the DMA; SWITCHOVER checks the slot's digest
    (ABORT on mismatch or a chunk CRC error); COMMIT makes the VF RUNNING here.

    Members
    -------
    ctl_vf, ctl_state_we, ctl_state, ctl_commit : In   control (pulses)
    ctl_status, walk_status : Out(stream of status_layout)   STATUS.error/reason updates
        for a VF: ``ctl_status`` answers a control write at once (accepted, invalid,
        busy), ``walk_status`` reports how a walk ended (rejected, aborted, timeout).
        The system keeps the per-VF STATUS so that it follows the VF across devices.
    rd_vf : In; rd : Out(view of ``readback_layout``)             per-VF registers
    here : Out(n_vfs)     the VF is served by this device; ``slot_of`` its slot
    outgoing : Out(n_vfs) the VF is migrating away (while both engines say ``here`` during
                          the commit handshake, the source still owns the VF)
    hold : Out(n_vfs)     the router must hold the VF's requests
    irq_live : Out(n_vfs) the VF's interrupts flow from its slot here (RUNNING or PRE_COPY);
                          at most one device has it set, none during a switchover
    done : Out            one-cycle event when an outgoing migration commits or aborts
    quiesce, irq_hold : Out(n_slots); idle : In(n_slots); slot_vf : Out   VF-unit control
    dirty_*, dirty_count, digest : the VF unit's dirty-tracking and digest outputs
    rd_desc/rd_data/rd_done, wr_desc/wr_data/wr_done : the DMA
    tx : Out(stream of ChunkBeat)   protocol messages to the other device's engine: the
        copier's (STATE_DATA, ROUND_END, the walker's control messages) and the receiver's
        replies (framed by a ``MigProtoEncoder``), merged whole by a packet arbiter
    rx : In(stream of ChunkBeat)    protocol messages from the other device's engine, taken
        by a ``MigProtoDecoder`` (store and forward: a message is acted on after its
        ``last`` beat; ``rx.ready`` falls only while the decoder's buffer is full)
    malformed : Out(16)  saturating count of dropped messages: malformed ones (the decoder
        drops them whole, the engine never sees them) plus well-formed ones that are wrong
        in their protocol state (``Malformed.UNEXPECTED``: STATE_DATA/ROUND_END for a VF
        not RESUMING here, SWITCHOVER or COMMIT for no incoming migration, ACCEPT, REJECT
        or COMMIT_ACK for no outgoing one, any ERROR), which change no VF state or image
        (SWITCHOVER and COMMIT are answered with ERROR)
    malformed_counts : Out(ArrayLayout(16, len(Malformed)))  the same drops per
        ``model.protocol.Malformed`` reason (saturating); ``[0]`` is ``malformed``

    A STATE_DATA chunk of the incoming VF that the decoder dropped for its framing or CRC
    makes the target refuse the image at SWITCHOVER (ABORT, reason CRC), like a DMA write
    error.  Latency: a message is handled from the cycle after its last beat (the decoder's
    store and forward); a STATE_DATA payload then streams to ``wr_data`` at one word per
    cycle.
    """

    def __init__(self, config: SystemConfig, device: Device):
        self.config, self.device = config, Device(device)
        lay = config.layout
        n_slots, n_vfs = config.slots(device), config.n_vfs
        self.n_slots = n_slots
        vf_bits, slot_bits = bits_for(n_vfs), bits_for(n_slots)
        self.readback_layout = data.StructLayout({
            "here": 1, "state": 3, "requested": 3, "slot": 8,
            "busy": 1, "migrating": 1, "converged": 1, "ready": 1,
            "initial_bytes": 32, "dirty_bytes": 32, "rounds": 8, "words": 32})
        self.status_layout = data.StructLayout({"vf": vf_bits, "error": 4, "reason": 4})
        self.done_layout = data.StructLayout({
            "vf": vf_bits, "committed": 1, "rounds": 8, "words": 32})
        count_bits = bits_for(lay.n_blocks + 1)
        super().__init__({
            "ctl_vf": In(vf_bits), "ctl_state_we": In(1), "ctl_state": In(3),
            "ctl_commit": In(1),
            # Status updates are events: the system must take them every cycle (ready=1).
            "ctl_status": Out(stream.Signature(self.status_layout)),
            "walk_status": Out(stream.Signature(self.status_layout)),
            "rd_vf": In(vf_bits), "rd": Out(self.readback_layout),
            "here": Out(n_vfs), "hold": Out(n_vfs), "outgoing": Out(n_vfs),
            "irq_live": Out(n_vfs),
            "slot_of": Out(data.ArrayLayout(slot_bits, n_vfs)),
            "done": Out(stream.Signature(self.done_layout)),
            "quiesce": Out(n_slots), "irq_hold": Out(n_slots), "idle": In(n_slots),
            "slot_vf": Out(data.ArrayLayout(vf_bits, n_slots)),
            "dirty_rd_en": Out(1), "dirty_rd_slot": Out(slot_bits),
            "dirty_rd_word": Out(bits_for(lay.dirty_words)), "dirty_rd_bits": In(32),
            "dirty_clear": Out(n_slots),
            "dirty_count": In(data.ArrayLayout(count_bits, n_slots)),
            "digest": In(data.ArrayLayout(32, n_slots)),
            "rd_desc": Out(stream.Signature(descriptor_layout(lay, n_slots))),
            "rd_data": In(stream.Signature(ChunkBeat)),
            "rd_done": In(stream.Signature(DmaStatus)),
            "wr_desc": Out(stream.Signature(descriptor_layout(lay, n_slots))),
            "wr_data": Out(stream.Signature(ChunkBeat)),
            "wr_done": In(stream.Signature(DmaStatus)),
            "tx": Out(stream.Signature(ChunkBeat)),
            "rx": In(stream.Signature(ChunkBeat)),
            "malformed": Out(COUNTER_BITS),
            "malformed_counts": Out(data.ArrayLayout(COUNTER_BITS, len(Malformed))),
        })

    # ------------------------------------------------------------------ elaboration
    def elaborate(self, platform):
        m = Module()
        cfg, lay = self.config, self.config.layout
        n_vfs, n_slots = cfg.n_vfs, self.n_slots
        vf_bits, slot_bits = bits_for(n_vfs), bits_for(n_slots)
        starts_here = self.device == Device.HOST  # every VF starts on the host, VF i in slot i

        m.submodules.copier = copier = MigCopier(
            lay, n_slots, n_vfs, cfg.chunk_words, cfg.precopy_threshold_blocks,
            cfg.max_precopy_rounds)
        m.submodules.decoder = decoder = MigProtoDecoder(n_vfs, cfg.max_chunk_words,
                                                         counter_bits=COUNTER_BITS)
        wiring.connect(m, wiring.flipped(self.rx), decoder.rx)
        m.d.comb += [self.malformed.eq(decoder.counts[Malformed.NONE]),
                     self.malformed_counts.eq(decoder.counts)]
        m.submodules.encoder = encoder = MigProtoEncoder()
        # The copier frames its own messages (STATE_DATA with the DMA's CRC beat, ROUND_END,
        # the walker's control messages) exactly as ``Message.to_words``; the encoder frames
        # the receiver's replies.
        m.submodules.tx_arbiter = tx_arbiter = PacketArbiter(2)  # 0: source role, 1: replies
        wiring.connect(m, copier.tx, tx_arbiter.inputs[0])
        wiring.connect(m, encoder.tx, tx_arbiter.inputs[1])
        wiring.connect(m, tx_arbiter.output, wiring.flipped(self.tx))
        wiring.connect(m, copier.rd_desc, wiring.flipped(self.rd_desc))
        wiring.connect(m, wiring.flipped(self.rd_data), copier.rd_data)
        wiring.connect(m, wiring.flipped(self.rd_done), copier.rd_done)

        # ---- per-VF tables (the VFIO state of every VF present on this device)
        def table(name, shape, init):
            return Array(Signal(shape, name=f"{name}_{v}", init=init(v)) for v in range(n_vfs))
        state = table("state", 3, lambda v: int(S.RUNNING) if starts_here else int(S.STOP))
        present = table("present", 1, lambda v: int(starts_here))  # here, or being received
        here = table("here", 1, lambda v: int(starts_here))          # served from this device
        slot = table("slot", slot_bits, lambda v: v if starts_here else 0)
        requested = table("requested", 3, lambda v: int(S.RUNNING))

        # ---- the VFIO arcs of the walked VF, resolved for the device's flags
        m.submodules.vfio = vfio = VfioWalker(cfg.flags)

        # ---- outgoing migration context
        src_active = Signal()   # MIG_ACCEPT received, not yet committed or aborted
        src_opening = Signal()  # MIG_BEGIN sent, waiting for the answer
        src_vf = Signal(vf_bits)
        src_slot = Signal(slot_bits)
        switched = Signal()     # SWITCHOVER sent: the target holds the final image
        remote_abort = Signal()
        remote_reason = Signal(4)

        # ---- incoming migration context
        tgt_active = Signal()
        tgt_vf = Signal(vf_bits)
        tgt_slot = Signal(slot_bits)
        tgt_verified = Signal()
        tgt_data_error = Signal()

        # ---- walker registers
        wvf = Signal(vf_bits)           # the VF whose request is being walked
        arc_next = Signal(3)            # the state the current arc leads to
        begin_mode = Signal(2)
        draining = Signal()             # hold + quiesce wvf while the arc drains it
        timer = Signal(range(cfg.timeout_cycles + 1))
        walker_busy = Signal()

        # ---- events from the receiver to the walker (one-cycle pulses)
        ev_accept, ev_reject, ev_commit_ack, ev_abort_ack = (Signal(name=n) for n in (
            "ev_accept", "ev_reject", "ev_commit_ack", "ev_abort_ack"))
        ev_reason = Signal(4)

        # ---- derived per-VF and per-slot outputs
        for v in range(n_vfs):
            draining_v = draining & (wvf == v)
            m.d.comb += [
                self.here[v].eq(here[v]),
                self.slot_of[v].eq(slot[v]),
                self.outgoing[v].eq((src_active | src_opening) & (src_vf == v)),
                self.irq_live[v].eq(present[v] & _in(state[v], INTERRUPTING)),
                self.hold[v].eq(here[v] & (_in(state[v], (S.STOP, S.STOP_COPY, S.RESUMING))
                                           | draining_v)),
            ]
        for s in range(n_slots):
            serving = Signal(name=f"serving_{s}")
            interrupting = Signal(name=f"interrupting_{s}")
            for v in range(n_vfs):
                on_slot = present[v] & (slot[v] == s)
                with m.If(on_slot):
                    m.d.comb += self.slot_vf[s].eq(v)
                with m.If(on_slot & here[v] & _in(state[v], SERVING)
                          & ~(draining & (wvf == v))):
                    m.d.comb += serving.eq(1)
                with m.If(on_slot & _in(state[v], INTERRUPTING)):
                    m.d.comb += interrupting.eq(1)
            # Free slots stay quiesced and interrupt-held: a freed source slot keeps its
            # (migrated) PBA bits, which must never be replayed from here.
            m.d.comb += [self.quiesce[s].eq(~serving), self.irq_hold[s].eq(~interrupting)]

        free_slot = Signal(slot_bits)
        have_free = Signal()
        for s in reversed(range(n_slots)):
            used = Signal(name=f"used_{s}")
            for v in range(n_vfs):
                with m.If(present[v] & (slot[v] == s)):
                    m.d.comb += used.eq(1)
            with m.If(~used):
                m.d.comb += [free_slot.eq(s), have_free.eq(1)]

        # ---- copier wiring
        m.d.comb += [
            copier.vf.eq(src_vf), copier.slot.eq(src_slot),
            self.dirty_rd_en.eq(copier.dirty_rd_en), self.dirty_rd_slot.eq(copier.dirty_rd_slot),
            self.dirty_rd_word.eq(copier.dirty_rd_word),
            copier.dirty_rd_bits.eq(self.dirty_rd_bits),
            copier.dirty_count.eq(self.dirty_count[src_slot]),
        ]
        for s in range(n_slots):
            m.d.comb += self.dirty_clear[s].eq(copier.dirty_clear & (src_slot == s))

        def send_control(type_, arg=0, reason_=0):
            """Offer a header-only message through the copier; True once it is taken."""
            m.d.comb += [copier.msg.valid.eq(1), copier.msg.payload.type.eq(type_),
                         copier.msg.payload.arg.eq(arg), copier.msg.payload.reason.eq(reason_)]
            return copier.msg.ready

        def finish(committed):
            m.d.comb += [self.done.valid.eq(1), self.done.payload.vf.eq(src_vf),
                         self.done.payload.committed.eq(committed),
                         self.done.payload.rounds.eq(copier.rounds),
                         self.done.payload.words.eq(copier.words_sent)]
            m.d.sync += [src_active.eq(0), switched.eq(0)]

        def fail(vf, code, why=Reason.NONE, port=None):
            """Report STATUS.error/reason for ``vf`` (the walk's port unless given)."""
            port = port if port is not None else self.walk_status
            m.d.comb += [port.valid.eq(1), port.payload.vf.eq(vf),
                         port.payload.error.eq(code), port.payload.reason.eq(why)]

        def answer(code):
            fail(self.ctl_vf, code, port=self.ctl_status)

        def take_arc():
            """The walked VF enters the next state of its walk (the arc's action is done)."""
            m.d.comb += vfio.arc.ready.eq(1)
            m.d.sync += state[wvf].eq(vfio.arc.payload.dst)

        def walk(current, target):
            """Start a walk toward ``target``; ``vfio.error`` says if it is invalid."""
            m.d.comb += [vfio.request.valid.eq(1), vfio.request.payload.current.eq(current),
                         vfio.request.payload.target.eq(target)]

        # ---- the walker: one VFIO request at a time, arc by arc.  ``vfio`` holds the
        # walked VF's state and target; the table ``state`` follows it arc by arc.
        cur, nxt = vfio.arc.payload.src, vfio.arc.payload.dst
        mine = src_active & (src_vf == wvf)
        ctl_here = here[self.ctl_vf]

        with m.FSM(name="walker"):
            with m.State("IDLE"):
                with m.If(remote_abort):
                    m.d.sync += wvf.eq(src_vf)
                    m.next = "ROLLBACK"
                with m.Elif(self.ctl_state_we & ctl_here):
                    walk(state[self.ctl_vf], self.ctl_state)
                    with m.If(self.ctl_state == state[self.ctl_vf]):
                        m.d.sync += requested[self.ctl_vf].eq(self.ctl_state)
                    with m.Elif(vfio.error):
                        answer(ErrorCode.INVALID_TRANSITION)
                    with m.Else():
                        m.d.sync += [wvf.eq(self.ctl_vf),
                                     requested[self.ctl_vf].eq(self.ctl_state)]
                        answer(ErrorCode.NONE)
                        m.next = "STEP"
                with m.Elif(self.ctl_commit & ctl_here):
                    with m.If(src_active & (src_vf == self.ctl_vf) & switched
                              & (state[self.ctl_vf] == S.STOP)):
                        m.d.sync += wvf.eq(self.ctl_vf)
                        m.next = "SEND_COMMIT"
                    with m.Else():
                        answer(ErrorCode.COMMIT_REFUSED)

            with m.State("STEP"):
                m.d.comb += walker_busy.eq(1)
                m.d.sync += [arc_next.eq(nxt), timer.eq(0)]
                with m.If(~vfio.busy):
                    m.next = "IDLE"
                with m.Elif(mine & _in(nxt, ROLLBACK_TO)):
                    m.next = "ABORT_STOP"
                with m.Elif(_in(cur, (S.RUNNING, S.RUNNING_P2P))
                            & _in(nxt, (S.PRE_COPY, S.PRE_COPY_P2P))):
                    with m.If(src_active):
                        fail(wvf, ErrorCode.BUSY)
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += begin_mode.eq(CopyMode.PRECOPY)
                        m.next = "BEGIN"
                with m.Elif((nxt == S.STOP) & _in(cur, (S.RUNNING, S.RUNNING_P2P))):
                    m.next = "DRAIN"
                with m.Elif((nxt == S.STOP_COPY) & _in(cur, (S.PRE_COPY, S.PRE_COPY_P2P))):
                    m.next = "DRAIN"
                with m.Elif((nxt == S.STOP_COPY) & (cur == S.STOP) & ~mine):
                    with m.If(src_active):
                        fail(wvf, ErrorCode.BUSY)
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += begin_mode.eq(CopyMode.FULL)
                        m.next = "BEGIN"
                with m.Else():
                    take_arc()

            with m.State("BEGIN"):
                m.d.comb += walker_busy.eq(1)
                m.d.sync += [src_vf.eq(wvf), src_slot.eq(slot[wvf])]
                with m.If(send_control(MsgType.BEGIN, lay.image_words)):
                    m.d.sync += [src_opening.eq(1), timer.eq(0)]
                    m.next = "WAIT_ACCEPT"
            with m.State("WAIT_ACCEPT"):
                m.d.comb += walker_busy.eq(1)
                m.d.sync += timer.eq(timer + 1)
                with m.If(ev_accept):
                    m.d.sync += [src_opening.eq(0), src_active.eq(1), switched.eq(0)]
                    m.d.comb += [copier.start.eq(1), copier.mode.eq(begin_mode)]
                    with m.If(begin_mode == CopyMode.PRECOPY):
                        take_arc()
                        m.next = "STEP"
                    with m.Else():
                        m.d.sync += draining.eq(1)
                        m.next = "WAIT_COPY"
                with m.Elif(ev_reject):
                    m.d.sync += src_opening.eq(0)
                    fail(wvf, ErrorCode.REJECTED, ev_reason)
                    m.next = "IDLE"
                with m.Elif(timer == cfg.timeout_cycles):
                    m.d.sync += src_opening.eq(0)
                    fail(wvf, ErrorCode.TIMEOUT, Reason.TIMEOUT)
                    m.next = "ABANDON"
            with m.State("ABANDON"):
                # The MIG_BEGIN (or its answer) may only be late, not lost (a link that was
                # down): tell the target to discard what it may have opened. Its ABORT_ACK
                # finds no migration here and is ignored.
                m.d.comb += walker_busy.eq(1)
                with m.If(send_control(MsgType.ABORT, 0, Reason.TIMEOUT)):
                    m.next = "IDLE"

            with m.State("DRAIN"):
                # Hold the VF's requests, stop its pre-copy (not another VF's) at a chunk
                # boundary, and wait for the request in service to finish.
                m.d.comb += [walker_busy.eq(1), copier.stop.eq(mine)]
                m.d.sync += draining.eq(1)
                with m.If(draining & self.idle.bit_select(slot[wvf], 1)
                          & ~(mine & copier.busy)):
                    with m.If(arc_next == S.STOP):
                        take_arc()
                        m.d.sync += draining.eq(0)
                        m.next = "STEP"
                    with m.Else():
                        m.d.comb += [copier.start.eq(1), copier.mode.eq(CopyMode.RESIDUAL)]
                        m.next = "WAIT_COPY"
            with m.State("WAIT_COPY"):
                m.d.comb += walker_busy.eq(1)
                with m.If(~copier.busy):
                    m.next = "SEND_SWITCHOVER"
            with m.State("SEND_SWITCHOVER"):
                m.d.comb += walker_busy.eq(1)
                with m.If(send_control(MsgType.SWITCHOVER, self.digest[src_slot])):
                    take_arc()  # into STOP_COPY
                    m.d.sync += [switched.eq(1), draining.eq(0)]
                    m.next = "STEP"

            with m.State("ABORT_STOP"):
                m.d.comb += [walker_busy.eq(1), copier.stop.eq(1)]
                with m.If(~copier.busy):
                    m.next = "SEND_ABORT"
            with m.State("SEND_ABORT"):
                m.d.comb += walker_busy.eq(1)
                with m.If(send_control(MsgType.ABORT, 0, Reason.REQUESTED)):
                    m.d.sync += timer.eq(0)
                    m.next = "WAIT_ABORT_ACK"
            with m.State("WAIT_ABORT_ACK"):
                m.d.comb += walker_busy.eq(1)
                m.d.sync += timer.eq(timer + 1)
                with m.If(ev_abort_ack | (timer == cfg.timeout_cycles)):
                    finish(committed=0)
                    with m.If(ev_abort_ack):
                        fail(wvf, ErrorCode.ABORTED, Reason.REQUESTED)
                    with m.Else():
                        fail(wvf, ErrorCode.TIMEOUT, Reason.TIMEOUT)
                    take_arc()
                    m.next = "STEP"

            with m.State("SEND_COMMIT"):
                m.d.comb += walker_busy.eq(1)
                with m.If(send_control(MsgType.COMMIT)):
                    m.d.sync += timer.eq(0)
                    m.next = "WAIT_COMMIT_ACK"
            with m.State("WAIT_COMMIT_ACK"):
                # No timeout here: once COMMIT is sent the target decides (it may already
                # serve the VF), and rolling back on silence would leave the VF running on
                # both devices. The link delivers COMMIT and its answer once it is up again;
                # until then the VF's requests wait at the router (consistency first).
                m.d.comb += walker_busy.eq(1)
                with m.If(ev_commit_ack):
                    finish(committed=1)
                    m.d.sync += [here[wvf].eq(0), present[wvf].eq(0)]
                    m.next = "IDLE"
                with m.Elif(remote_abort):
                    m.next = "ROLLBACK"

            with m.State("ROLLBACK"):
                # The target refused the image (digest/CRC) or went silent: acknowledge,
                # and walk the VF back to RUNNING here, where its image never changed.
                m.d.comb += [walker_busy.eq(1), copier.stop.eq(1)]
                with m.If(~copier.busy & send_control(MsgType.ABORT_ACK)):
                    finish(committed=0)
                    with m.If(remote_reason == Reason.TIMEOUT):
                        fail(wvf, ErrorCode.TIMEOUT, Reason.TIMEOUT)
                    with m.Else():
                        fail(wvf, ErrorCode.ABORTED, remote_reason)
                    walk(state[wvf], S.RUNNING)
                    m.d.sync += [remote_abort.eq(0), requested[wvf].eq(S.RUNNING),
                                 draining.eq(0)]
                    m.next = "STEP"

        # A request or commit arriving while the walker is busy is refused, not queued.
        with m.If(walker_busy & (self.ctl_state_we | self.ctl_commit) & ctl_here):
            answer(ErrorCode.BUSY)

        # ---- the receiver: well-formed messages from the decoder, dispatched by type to
        # the target or source role.  A message wrong in its protocol state is dropped and
        # reported to the decoder (``unexpected``), which counts it with the malformed ones.
        incoming = decoder.header.payload
        hdr = Signal.like(incoming)             # the message being handled
        msg_type, msg_vf, msg_reason, arg = hdr.type, hdr.vf[:vf_bits], hdr.reason, hdr.arg
        reply = Signal.like(encoder.header.payload)
        reply_valid = Signal()
        settle = Signal(2)
        for_target = tgt_active & (msg_vf == tgt_vf)
        for_source = (src_active | src_opening) & (msg_vf == src_vf)

        def send_reply(type_, arg_=0, reason_=Reason.NONE):
            m.d.sync += [reply_valid.eq(1), reply.type.eq(type_), reply.arg.eq(arg_),
                         reply.reason.eq(reason_), reply.vf.eq(msg_vf), reply.length.eq(0)]

        def unexpected():
            m.d.comb += decoder.unexpected.eq(1)

        def discard_incoming():
            m.d.sync += [tgt_active.eq(0), present[tgt_vf].eq(0)]

        # A chunk of the incoming image that the decoder dropped for its framing or CRC (its
        # header was sound, so its VF id is) is lost: the image is refused at SWITCHOVER
        # with reason CRC, as if the DMA had found the error.
        lost = decoder.malformed
        with m.If(lost.valid & tgt_active & (lost.type == MsgType.STATE_DATA)
                  & (lost.vf == tgt_vf)
                  & lost.reason.matches(Malformed.FRAMING, Malformed.CRC)):
            m.d.sync += tgt_data_error.eq(1)

        m.d.comb += [
            self.wr_desc.payload.slot.eq(tgt_slot),
            self.wr_desc.payload.offset.eq(arg),
            self.wr_desc.payload.length.eq(hdr.length),
            self.wr_done.ready.eq(1),
        ]
        with m.FSM(name="receiver"):
            with m.State("HEADER"):
                m.d.comb += decoder.header.ready.eq(1)
                receiving = tgt_active & (incoming.vf == tgt_vf) & (state[tgt_vf] == S.RESUMING)
                with m.If(decoder.header.valid):
                    m.d.sync += [hdr.eq(incoming), settle.eq(0)]
                    with m.Switch(incoming.type):
                        with m.Case(MsgType.STATE_DATA):
                            with m.If(receiving):
                                m.next = "DATA_DESC"
                            with m.Else():
                                unexpected()
                                m.next = "DRAIN"
                        with m.Case(MsgType.ROUND_END):  # a progress report: nothing to do
                            with m.If(~receiving):
                                unexpected()
                            m.next = "DRAIN"
                        with m.Default():
                            m.next = "DISPATCH"
            with m.State("DRAIN"):
                m.d.comb += decoder.payload.ready.eq(1)
                with m.If(decoder.payload.valid & decoder.payload.payload.last):
                    m.next = "HEADER"
            with m.State("DATA_DESC"):
                m.d.comb += self.wr_desc.valid.eq(1)
                with m.If(self.wr_desc.ready):
                    m.next = "DATA"
            with m.State("DATA"):
                # The payload words and the CRC word: the DMA's chunk format (it re-checks
                # the CRC end to end).
                wiring.connect(m, decoder.payload, wiring.flipped(self.wr_data))
                with m.If(decoder.payload.valid & self.wr_data.ready
                          & decoder.payload.payload.last):
                    m.next = "DATA_DONE"
            with m.State("DATA_DONE"):
                with m.If(self.wr_done.valid):
                    with m.If(self.wr_done.payload.as_value().any()):
                        m.d.sync += tgt_data_error.eq(1)
                    m.next = "HEADER"
            with m.State("DISPATCH"):
                # Wait for the previous reply to leave and for the last DMA write to reach
                # the slot's digest (the VF unit updates it two cycles after a write).
                m.d.sync += settle.eq(settle + (settle != 3))
                with m.If(~reply_valid & (settle == 3)):
                    m.next = "HEADER"
                    with m.Switch(msg_type):
                        with m.Case(MsgType.BEGIN):
                            with m.If(tgt_active):
                                send_reply(MsgType.REJECT, 0, Reason.BUSY)
                            with m.Elif(arg != lay.image_words):
                                send_reply(MsgType.REJECT, 0, Reason.UNSUPPORTED)
                            with m.Elif(present[msg_vf]):
                                send_reply(MsgType.REJECT, 0, Reason.PROTOCOL)
                            with m.Elif(~have_free):
                                send_reply(MsgType.REJECT, 0, Reason.NO_SLOT)
                            with m.Else():
                                m.d.sync += [
                                    tgt_active.eq(1), tgt_vf.eq(msg_vf), tgt_slot.eq(free_slot),
                                    tgt_verified.eq(0), tgt_data_error.eq(0),
                                    present[msg_vf].eq(1), here[msg_vf].eq(0),
                                    slot[msg_vf].eq(free_slot), state[msg_vf].eq(S.RESUMING),
                                    requested[msg_vf].eq(S.RESUMING)]
                                send_reply(MsgType.ACCEPT, free_slot)
                        with m.Case(MsgType.SWITCHOVER):
                            with m.If(for_target & (state[tgt_vf] == S.RESUMING)):
                                with m.If(tgt_data_error):
                                    discard_incoming()
                                    send_reply(MsgType.ABORT, 0, Reason.CRC)
                                with m.Elif(self.digest[tgt_slot] != arg):
                                    discard_incoming()
                                    send_reply(MsgType.ABORT, 0, Reason.DIGEST)
                                with m.Else():  # leaving RESUMING checked the digest
                                    m.d.sync += [tgt_verified.eq(1), state[tgt_vf].eq(S.STOP)]
                            with m.Else():
                                unexpected()
                                send_reply(MsgType.ERROR, 0, Reason.PROTOCOL)
                        with m.Case(MsgType.COMMIT):
                            with m.If(for_target & tgt_verified):
                                # STOP -> RUNNING_P2P -> RUNNING: the VF serves from here and
                                # its pending interrupts replay once (irq_hold falls).
                                m.d.sync += [state[tgt_vf].eq(S.RUNNING), here[tgt_vf].eq(1),
                                             requested[tgt_vf].eq(S.RUNNING),
                                             tgt_active.eq(0)]
                                send_reply(MsgType.COMMIT_ACK, tgt_slot)
                            with m.Elif(for_target):
                                discard_incoming()
                                send_reply(MsgType.ABORT, 0, Reason.PROTOCOL)
                            with m.Else():
                                unexpected()
                                send_reply(MsgType.ERROR, 0, Reason.PROTOCOL)
                        with m.Case(MsgType.ABORT):
                            with m.If(for_target):
                                discard_incoming()
                                send_reply(MsgType.ABORT_ACK)
                            with m.Elif(for_source):
                                m.d.sync += [remote_abort.eq(1), remote_reason.eq(msg_reason)]
                            with m.Else():  # already gone: acknowledge so the peer can finish
                                send_reply(MsgType.ABORT_ACK)
                        with m.Case(MsgType.ACCEPT):
                            m.d.comb += ev_accept.eq(for_source & src_opening)
                            with m.If(~(for_source & src_opening)):
                                unexpected()  # e.g. after WAIT_ACCEPT timed out
                        with m.Case(MsgType.REJECT):
                            m.d.comb += [ev_reject.eq(for_source & src_opening),
                                         ev_reason.eq(msg_reason)]
                            with m.If(~(for_source & src_opening)):
                                unexpected()
                        with m.Case(MsgType.COMMIT_ACK):
                            m.d.comb += ev_commit_ack.eq(for_source)
                            with m.If(~for_source):
                                unexpected()
                        with m.Case(MsgType.ABORT_ACK):
                            # Also the answer to an ABORT this target sent: not an error.
                            m.d.comb += ev_abort_ack.eq(for_source)
                        with m.Case(MsgType.ERROR):
                            unexpected()  # the peer's complaint; never answered (no ping-pong)

        # ---- replies (target role answers, ERROR), framed by the encoder: TX arbiter input 1
        m.d.comb += [encoder.header.valid.eq(reply_valid), encoder.header.payload.eq(reply),
                     encoder.payload.valid.eq(0)]
        with m.If(encoder.header.valid & encoder.header.ready):
            m.d.sync += reply_valid.eq(0)

        # ---- register readback for rd_vf
        rv = self.rd_vf
        rd_mine = src_active & (src_vf == rv)
        m.d.comb += [
            self.rd.here.eq(here[rv]), self.rd.state.eq(state[rv]),
            self.rd.requested.eq(requested[rv]), self.rd.slot.eq(slot[rv]),
            # One walker per device: busy means a request written now would be refused.
            self.rd.busy.eq(walker_busy),
            self.rd.migrating.eq(rd_mine | (src_opening & (src_vf == rv))),
            self.rd.converged.eq(rd_mine & copier.converged),
            self.rd.ready.eq(rd_mine & switched & (state[rv] == S.STOP)),
        ]
        with m.If(rd_mine):
            m.d.comb += [
                self.rd.initial_bytes.eq(copier.initial_left * 4),
                self.rd.rounds.eq(copier.rounds), self.rd.words.eq(copier.words_sent),
                self.rd.dirty_bytes.eq(self.dirty_count[src_slot] * (lay.block_words * 4)),
            ]
        return m
