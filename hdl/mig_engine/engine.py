"""The per-device migration engine: VFIO v2 state machines, source and target roles."""

from amaranth import Module
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from model.config import Device, SystemConfig
from model.protocol import Malformed
from model.vfio import DeviceState

from ..formats import ChunkBeat, DmaStatus, bits_for, descriptor_layout
from ..mig_copier import MigCopier
from ..migproto import MigProtoDecoder, MigProtoEncoder
from ..packet_arbiter import PacketArbiter
from .receiver import TargetReceiver
from .source import SourceWalker, done_layout, status_layout
from .vf_table import VfTable

COUNTER_BITS = 16  # width of the dropped-message counters (saturating)

S = DeviceState


class MigEngine(wiring.Component):
    """Migration engine of one device (``device``): one outgoing and one incoming VF at a time.

    *VFIO*: every VF placed on this device has a VFIO migration v2 device state
    (docs/design.md).  A request on the control port (``ctl_*``) for a VF that lives here is
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
    phase, phase_vf : Out the downtime phase of VF ``phase_vf`` (``model.regmap.DowntimePhase``)
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
        self.status_layout = status_layout(n_vfs)
        self.done_layout = done_layout(n_vfs)
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
            "phase": Out(3), "phase_vf": Out(vf_bits),
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

        m.submodules.copier = copier = MigCopier(
            lay, n_slots, n_vfs, cfg.chunk_words, cfg.precopy_threshold_blocks,
            cfg.max_precopy_rounds)
        m.submodules.decoder = decoder = MigProtoDecoder(n_vfs, cfg.max_chunk_words,
                                                         counter_bits=COUNTER_BITS)
        m.submodules.encoder = encoder = MigProtoEncoder()
        # Every VF starts on the host, VF i in slot i.
        m.submodules.table = table = VfTable(n_vfs, n_slots, self.device == Device.HOST)
        m.submodules.source = source = SourceWalker(cfg, n_slots)
        m.submodules.receiver = receiver = TargetReceiver(lay, n_vfs, n_slots)

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
        wiring.connect(m, wiring.flipped(self.rx), decoder.rx)
        m.d.comb += [self.malformed.eq(decoder.counts[Malformed.NONE]),
                     self.malformed_counts.eq(decoder.counts)]

        # ---- the receiver: decoder in, replies out through the encoder, DMA writes
        wiring.connect(m, decoder.header, receiver.header)
        wiring.connect(m, decoder.payload, receiver.payload)
        wiring.connect(m, receiver.reply, encoder.header)
        wiring.connect(m, receiver.wr_desc, wiring.flipped(self.wr_desc))
        wiring.connect(m, receiver.wr_data, wiring.flipped(self.wr_data))
        wiring.connect(m, wiring.flipped(self.wr_done), receiver.wr_done)
        m.d.comb += [receiver.lost.eq(decoder.malformed), decoder.unexpected.eq(
            receiver.unexpected), encoder.payload.valid.eq(0), receiver.digest.eq(self.digest)]

        # ---- the source role: control port in, the copier driven
        m.d.comb += [
            source.ctl_vf.eq(self.ctl_vf), source.ctl_state_we.eq(self.ctl_state_we),
            source.ctl_state.eq(self.ctl_state), source.ctl_commit.eq(self.ctl_commit),
            source.idle.eq(self.idle), source.digest.eq(self.digest),
            copier.start.eq(source.copy_start), copier.mode.eq(source.copy_mode),
            copier.stop.eq(source.copy_stop), source.copy_busy.eq(copier.busy),
            source.copy_rounds.eq(copier.rounds), source.copy_words.eq(copier.words_sent),
            copier.vf.eq(source.src_vf), copier.slot.eq(source.src_slot),
        ]
        for port in ("ctl_status", "walk_status", "done"):
            wiring.connect(m, getattr(source, port), wiring.flipped(getattr(self, port)))
        wiring.connect(m, source.msg, copier.msg)

        # ---- the per-VF table, read by both roles and written by both
        m.d.comb += [table.src_wr.eq(source.src_wr), table.tgt_wr.eq(receiver.tgt_wr),
                     table.draining.eq(source.draining), table.draining_vf.eq(source.wvf)]
        for part in (source, receiver):
            m.d.comb += part.state.eq(table.state)
        m.d.comb += [
            source.here.eq(table.here), source.slot.eq(table.slot),
            receiver.present.eq(table.present), receiver.free_slot.eq(table.free_slot),
            receiver.have_free.eq(table.have_free),
        ]
        for name in ("src_active", "src_opening", "src_vf"):
            m.d.comb += getattr(receiver, name).eq(getattr(source, name))
        for name in ("ev_accept", "ev_reject", "ev_commit_ack", "ev_abort_ack", "ev_reason",
                     "remote_abort", "remote_reason"):
            m.d.comb += getattr(source, name).eq(getattr(receiver, name))
        self._outputs(m, table, source)
        self._copier_dirty(m, copier, source)
        self._readback(m, table, source, copier)
        return m

    def _outputs(self, m, table, source):
        """Per-VF and per-slot outputs of the table; ``outgoing`` of the source role."""
        m.d.comb += [
            self.here.eq(table.here), self.slot_of.eq(table.slot), self.hold.eq(table.hold),
            self.irq_live.eq(table.irq_live), self.quiesce.eq(table.quiesce),
            self.irq_hold.eq(table.irq_hold), self.slot_vf.eq(table.slot_vf),
            self.phase.eq(source.phase), self.phase_vf.eq(source.phase_vf),
        ]
        opening_or_active = source.src_active | source.src_opening
        for v in range(self.config.n_vfs):
            m.d.comb += self.outgoing[v].eq(opening_or_active & (source.src_vf == v))

    def _copier_dirty(self, m, copier, source):
        """The copier reads and clears the dirty bitmap of the outgoing VF's slot."""
        src_slot = source.src_slot
        m.d.comb += [
            self.dirty_rd_en.eq(copier.dirty_rd_en), self.dirty_rd_slot.eq(copier.dirty_rd_slot),
            self.dirty_rd_word.eq(copier.dirty_rd_word),
            copier.dirty_rd_bits.eq(self.dirty_rd_bits),
            copier.dirty_count.eq(self.dirty_count[src_slot]),
        ]
        for s in range(self.n_slots):
            m.d.comb += self.dirty_clear[s].eq(copier.dirty_clear & (src_slot == s))

    def _readback(self, m, table, source, copier):
        """The per-VF registers of VF ``rd_vf``."""
        rv, lay = self.rd_vf, self.config.layout
        rd_mine = source.src_active & (source.src_vf == rv)
        m.d.comb += [
            self.rd.here.eq(table.here.bit_select(rv, 1)), self.rd.state.eq(table.state[rv]),
            self.rd.requested.eq(table.requested[rv]), self.rd.slot.eq(table.slot[rv]),
            # One walker per device: busy means a request written now would be refused.
            self.rd.busy.eq(source.busy),
            self.rd.migrating.eq(rd_mine | (source.src_opening & (source.src_vf == rv))),
            self.rd.converged.eq(rd_mine & copier.converged),
            self.rd.ready.eq(rd_mine & source.switched & (table.state[rv] == S.STOP)),
        ]
        with m.If(rd_mine):
            m.d.comb += [
                self.rd.initial_bytes.eq(copier.initial_left * 4),
                self.rd.rounds.eq(copier.rounds), self.rd.words.eq(copier.words_sent),
                self.rd.dirty_bytes.eq(
                    self.dirty_count[source.src_slot] * (lay.block_words * 4)),
            ]
