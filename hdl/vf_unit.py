"""The VF unit: one device's VF slots, each in its own state-image bank (docs/design.md).

Slot ``s``'s image word ``a`` is state address ``Cat(a, s)``; each slot's ``layout.stride``
words live in a bank of two block-RAM-mappable memories (one write and one read port each)
that take the same writes: one is read by the request FSM, the other by the state-access
port. A request FSM serves READ/WRITE/ADD/NOTIFY one at a time with a configurable service
latency and raises MSI-X messages; the migration engine's DMA reads and writes the images
through the state-access port. Per slot the unit keeps a dirty-block bitmap (read-and-clear)
and an always-current image digest, so neither costs downtime.
"""

from __future__ import annotations

from types import SimpleNamespace

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hdl.formats import irq_layout, vf_request_layout, vf_response_layout
from model.common import bits_for, check_int
from model.state import (
    DIGEST_OFFSET_SHIFT,
    DIGEST_STEPS,
    MSIX_ADDR_LO,
    MSIX_CTRL,
    MSIX_CTRL_MASK,
    MSIX_DATA,
    ImageLayout,
    Op,
    zero_image_digest,
)

__all__ = ["DIGEST_LATENCY", "SERVICE_DIGEST_LATENCY", "VFUnit", "word_hash", "popcount"]

#: Cycles from a write to its change in the slot's digest: 3 for a service write, 4 for a
#: state-port write (it lands a cycle late). DIGEST_LATENCY bounds both.
SERVICE_DIGEST_LATENCY = 3
DIGEST_LATENCY = SERVICE_DIGEST_LATENCY + 1


def word_hash(offset, value):
    """Combinational twin of ``model.state.word_hash`` (bit-exact, 32-bit result)."""
    x = (value ^ offset ^ (offset << DIGEST_OFFSET_SHIFT))[:32]
    for step in DIGEST_STEPS:
        x = _digest_step(step, x)
    return x


def _digest_step(step, x):
    """Twin of ``model.state.digest_step`` on a 32-bit value."""
    kind, *params = step
    if kind == "add":
        return (x + params[0])[:32]
    if kind == "rotxor":
        return x ^ x.rotate_left(params[0]) ^ x.rotate_left(params[1])
    if kind == "shladd":
        return (x + (x << params[0]))[:32]
    if kind == "xorshr":
        return x ^ (x >> params[0])
    raise ValueError(f"unknown digest step {kind!r}")


def popcount(bits):
    """Number of set bits of ``bits``, as a balanced adder tree."""
    terms = [bits[i] for i in range(len(bits))]
    while len(terms) > 1:
        pairs = [terms[i] + terms[i + 1] for i in range(0, len(terms) - 1, 2)]
        terms = pairs + terms[len(pairs) * 2:]
    return terms[0]


class VFUnit(wiring.Component):
    """``n_slots`` VF slots of one device in per-slot state-image banks: READ/WRITE/ADD/NOTIFY
    served one at a time with a configurable latency, a state-access port for the DMA,
    per-slot quiesce, interrupt hold with PBA replay, a read-and-clear dirty bitmap and a
    live per-slot image digest.

    Parameters
    ----------
    layout : ImageLayout
        The uniform state image of every slot.
    n_slots : int
        Slots, 1..256.
    service_latency : int
        Minimum cycles from accepting a request to its response, 2..4096 (host devices are
        slow, offload devices fast).
    tag_bits : int
        Width of the request tag echoed in the response, 1..16.

    Members
    -------
    req : In(stream.Signature(vf_request_layout))
        slot, op (``model.state.Op``), addr (image word offset), data, tag. A request for a
        quiesced slot is not accepted (it waits at the head: backpressure).
    resp : Out(stream.Signature(vf_response_layout))
        One response per request, in request order: slot, tag, data, error. ``error`` = 1
        (nothing changed) for addr >= image_words, a NOTIFY vector >= msix_vectors or a slot
        >= n_slots.
    irq : Out(stream.Signature(irq_layout))
        MSI-X messages: slot, vector, addr (the vector's addr_lo word), data (its data word).
    sa_rd_en, sa_rd_addr, sa_rd_data
        State-port read, plain memory: ``sa_rd_addr`` = Cat(offset, slot); data valid the cycle
        after ``sa_rd_en`` and held until the next read.
    sa_wr_en, sa_wr_addr, sa_wr_data
        State-port write, one word per cycle, back-to-back. Does not mark blocks dirty; does
        update the slot's digest. A write to a slot >= n_slots is dropped.
    dirty_rd_en, dirty_rd_slot, dirty_rd_word, dirty_rd_bits
        ``dirty_rd_bits`` (valid the cycle after ``dirty_rd_en``, held otherwise) = bits
        [32*word, 32*word+32) of the slot's dirty-block bitmap; the read clears them
        atomically (a block dirtied in the same cycle stays dirty).
    dirty_clear : In(n_slots)
        Per slot, level: while high the slot's bitmap is held at 0.
    dirty_count : Out(ArrayLayout(bits_for(n_blocks + 1), n_slots))
        Dirty blocks per slot: the bitmap's population count, exact every cycle.
    digest : Out(ArrayLayout(32, n_slots))
        Per slot, ``model.state.image_digest`` of its image words [0, image_words). A write
        of either kind is included at most ``DIGEST_LATENCY`` (4) cycles after its write
        cycle (a service write: 3).
    quiesce : In(n_slots)
        Stop accepting requests for the slot.
    idle : Out(n_slots)
        The slot has no request in service and no interrupt replay pending or running.
    resuming : Out(n_slots)
        The slot still owes its release replay (pending or running) or the reset sweep
        runs: it cannot serve a request yet (the end of a migration's downtime).
    irq_hold : In(n_slots)
        While high, NOTIFY sets the vector's PBA bit instead of sending. When it falls, every
        pending unmasked vector of the slot is sent once and its PBA bit cleared (the replay
        runs in the request FSM before the next request is accepted).

    Latency and throughput: a request accepted in cycle ``t`` has its response valid at
    ``t + max(service_latency, work)``; work is 2 cycles for READ/WRITE/ADD and errors, 3 for a
    NOTIFY that goes pending, 5 for a NOTIFY that is sent (its ``irq`` is valid from ``t + 4``),
    4 for a WRITE/ADD to an MSI-X vector-control word (8 when that delivers a pending vector).
    The next request is accepted the cycle after the response is taken, so back-to-back
    requests run at one per ``service_latency + 1`` cycles. ``resp`` and ``irq`` backpressure
    stall the FSM; nothing is dropped. The replay after an ``irq_hold`` release takes 2 cycles
    per vector that is not delivered and 6 per vector that is; it runs before the next
    request is accepted. A service write (WRITE, ADD, a PBA update) waits one cycle for every
    cycle a state-port write lands in the same slot's bank (each state-port write lands the
    cycle after ``sa_wr_en``): the state port never waits. The migration engine never writes
    a slot that serves requests, so in the system this costs nothing.

    Contract. Service and state-port accesses to the *same word* in the same cycle (a
    state-port write accesses its word in its cycle and the next) are not ordered, and a
    read among them returns an undefined value (the migration engine never copies into a
    slot that serves requests, nor serves a slot being resumed); accesses to different words
    of one slot are fine, and a read sees every write issued in an earlier cycle. The state
    port must not read and write the same slot in one cycle (both use the slot's state-port
    memory; the DMA reads only migration sources and writes only migration targets):
    ``sa_rd_data`` is then undefined.

    Reset: for ``n_slots * layout.stride`` cycles after ``rst`` the unit sweeps its banks to
    zero, one word per cycle (matching the digests' reset value); meanwhile ``idle`` is 0,
    no request is accepted and the state port must not be used.
    """

    def __init__(self, layout: ImageLayout, n_slots: int, service_latency: int,
                 tag_bits: int = 8):
        if not isinstance(layout, ImageLayout):
            raise TypeError(f"VFUnit layout must be an ImageLayout, not {layout!r}")
        check_int("VFUnit", "n_slots", n_slots, 1, 256)
        check_int("VFUnit", "service_latency", service_latency, 2, 4096)
        check_int("VFUnit", "tag_bits", tag_bits, 1, 16)
        self.layout = layout
        self.n_slots = n_slots
        self.service_latency = service_latency
        self.tag_bits = tag_bits
        self.slot_bits = bits_for(n_slots)
        flat_bits = self.slot_bits + layout.addr_bits
        super().__init__({
            "req": In(stream.Signature(vf_request_layout(layout, n_slots, tag_bits))),
            "resp": Out(stream.Signature(vf_response_layout(n_slots, tag_bits))),
            "irq": Out(stream.Signature(irq_layout(layout, n_slots))),
            "sa_rd_en": In(1),
            "sa_rd_addr": In(flat_bits),
            "sa_rd_data": Out(32),
            "sa_wr_en": In(1),
            "sa_wr_addr": In(flat_bits),
            "sa_wr_data": In(32),
            "dirty_rd_en": In(1),
            "dirty_rd_slot": In(self.slot_bits),
            "dirty_rd_word": In(bits_for(layout.dirty_words)),
            "dirty_rd_bits": Out(32),
            "dirty_clear": In(n_slots),
            "dirty_count": Out(data.ArrayLayout(unsigned(bits_for(layout.n_blocks + 1)),
                                                n_slots)),
            "digest": Out(data.ArrayLayout(32, n_slots),
                          init=[zero_image_digest(layout)] * n_slots),
            "quiesce": In(n_slots),
            "idle": Out(n_slots), "resuming": Out(n_slots),
            "irq_hold": In(n_slots),
        })

    def elaborate(self, platform):
        m = Module()
        n = SimpleNamespace()
        self._state_port_write(m, n)
        self._service_port(m, n)
        self._banks(m, n)
        self._service_read(m, n)
        self._state_port_read(m, n)
        self._digests(m, n)
        self._dirty_tracking(m, n)
        self._hold_release(m, n)
        fsm = self._request_fsm(m, n)
        self._idle_and_resuming(m, n, fsm)
        return m

    def _idle_and_resuming(self, m, n, fsm):
        """``idle`` and ``resuming`` per slot, from the FSM and the pending replays."""
        n_slots = self.n_slots
        serving = Signal(n_slots)
        with m.If(fsm.ongoing("CLEAR")):
            m.d.comb += serving.eq((1 << n_slots) - 1)
        with m.Elif(~fsm.ongoing("IDLE")):
            m.d.comb += serving.eq(1 << n.r_slot)
        m.d.comb += self.idle.eq(~serving & ~n.replay_pending & ~n.released)
        # Resuming: a slot the FSM owes (or is running) its release replay, or the reset
        # sweep; a slot serving requests again after the replay is not resuming.
        replaying = Signal(n_slots)
        with m.If(fsm.ongoing("CLEAR")):
            m.d.comb += replaying.eq((1 << n_slots) - 1)
        with m.Elif(~fsm.ongoing("IDLE") & n.replay_all):
            m.d.comb += replaying.eq(1 << n.r_slot)
        m.d.comb += self.resuming.eq(replaying | n.replay_pending | n.released)

    def _state_port_write(self, m, n):
        """A state-port write reads the word's old value (for the digest) in its cycle and
        lands in the bank one cycle later (``n.land_*``), so no memory port ever needs the
        old value of a word written in the same cycle."""
        addr_bits = self.layout.addr_bits
        # A write to a slot that does not exist is dropped rather than aliased onto another.
        n.sa_wr_en = Signal()
        m.d.comb += n.sa_wr_en.eq(self.sa_wr_en & (self.sa_wr_addr[addr_bits:] < self.n_slots))
        n.land_valid = Signal()
        n.land_addr = Signal.like(self.sa_wr_addr)
        n.land_data = Signal(32)
        m.d.sync += [n.land_valid.eq(n.sa_wr_en), n.land_addr.eq(self.sa_wr_addr),
                     n.land_data.eq(self.sa_wr_data)]
        n.land_off, n.land_slot = n.land_addr[:addr_bits], n.land_addr[addr_bits:]
        # The word that landed last cycle: what a read colliding with that landing returns.
        n.landed_data = Signal(32)
        m.d.sync += n.landed_data.eq(n.land_data)

    @staticmethod
    def _landing_hit(m, n, addr, name, when=1):
        """A register: a read of flat ``addr`` this cycle (``when``) collides with the landing
        write, so next cycle its data is ``n.landed_data``, not the bank's."""
        hit = Signal(name=name)
        m.d.sync += hit.eq(when & n.land_valid & (addr == n.land_addr))
        return hit

    def _service_port(self, m, n):
        """The request FSM's memory access: its read address, its write and the reset sweep.
        A service write waits while a state-port write lands in the same bank
        (``n.wr_stall``): the DMA cannot wait."""
        lay, addr_bits = self.layout, self.layout.addr_bits
        n.rd_slot = Signal(self.slot_bits)
        n.rd_off = Signal(addr_bits)
        n.r_slot = Signal(self.slot_bits)
        n.wr_req = Signal()      # the FSM writes this cycle, if the bank is free
        n.wr_off = Signal(addr_bits)
        n.wr_old = Signal(32)
        n.wr_new = Signal(32)
        n.wr_stall = Signal()
        n.wr_en = Signal()       # the service write happens
        m.d.comb += [n.wr_stall.eq(n.wr_req & n.land_valid & (n.land_slot == n.r_slot)),
                     n.wr_en.eq(n.wr_req & ~n.wr_stall)]
        # After reset the whole memory is swept to zero so it matches the digests' reset
        # value (a reset after traffic would otherwise leave stale words behind them).
        n.clearing = Signal()
        n.clear_addr = Signal(range(self.n_slots * lay.stride))

    def _banks(self, m, n):
        """One bank per slot, each two memories with identical writes: ``n.svc_out`` read by
        the request FSM, ``n.sa_out`` by the state port (its reads and old-value reads)."""
        addr_bits = self.layout.addr_bits
        clear_off, clear_slot = n.clear_addr[:addr_bits], n.clear_addr[addr_bits:]
        local_off = Mux(n.clearing, clear_off, n.wr_off)
        local_data = Mux(n.clearing, 0, n.wr_new)
        sa_wr_off, sa_wr_slot = self.sa_wr_addr[:addr_bits], self.sa_wr_addr[addr_bits:]
        n.svc_out, n.sa_out = [], []
        for slot in range(self.n_slots):
            landing = n.land_valid & (n.land_slot == slot)
            # The FSM's writes and the sweep never meet a landing write in one bank.
            local = (n.clearing & (clear_slot == slot)) | (n.wr_en & (n.r_slot == slot))
            old_read = n.sa_wr_en & (sa_wr_slot == slot)
            svc_rd, sa_rd = self._bank(m, slot, en=landing | local,
                                       addr=Mux(landing, n.land_off, local_off),
                                       data=Mux(landing, n.land_data, local_data))
            m.d.comb += [svc_rd.addr.eq(n.rd_off),
                         sa_rd.addr.eq(Mux(old_read, sa_wr_off, self.sa_rd_addr[:addr_bits]))]
            n.svc_out.append(svc_rd.data)
            n.sa_out.append(sa_rd.data)

    def _bank(self, m, slot, en, addr, data):
        """Slot ``slot``'s two memories (one write port and one read port each, so they map
        to block RAM); returns their read ports."""
        ports = []
        for copy in ("svc", "sa"):
            # no_rw_check: no read whose data is used ever hits the word written in the same
            # cycle (the state port's writes land a cycle late and collisions with them are
            # forwarded; the FSM never reads the word it writes), so yosys need not emulate
            # read-during-write behaviour in logic.
            mem = Memory(shape=32, depth=self.layout.stride, init=[],
                         attrs={"no_rw_check": 1})
            m.submodules[f"{copy}_bank_{slot}"] = mem
            wr = mem.write_port()
            m.d.comb += [wr.en.eq(en), wr.addr.eq(addr), wr.data.eq(data)]
            ports.append(mem.read_port())
        return ports

    def _service_read(self, m, n):
        """``n.svc_data``: the word the FSM addressed last cycle (``n.rd_slot``, ``n.rd_off``)."""
        sel = Signal.like(n.rd_slot)
        m.d.sync += sel.eq(n.rd_slot)
        hit = self._landing_hit(m, n, Cat(n.rd_off, n.rd_slot), "svc_landing_hit")
        n.svc_data = Signal(32)
        m.d.comb += n.svc_data.eq(Mux(hit, n.landed_data, Array(n.svc_out)[sel]))

    def _state_port_read(self, m, n):
        """``sa_rd_data``: plain-memory reads, held until the next read."""
        addr_bits = self.layout.addr_bits
        fresh = Signal()
        sel = Signal(self.slot_bits)
        held = Signal(32)
        m.d.sync += [fresh.eq(self.sa_rd_en), held.eq(self.sa_rd_data)]
        with m.If(self.sa_rd_en):
            m.d.sync += sel.eq(self.sa_rd_addr[addr_bits:])
        hit = self._landing_hit(m, n, self.sa_rd_addr, "sa_landing_hit")
        read = Mux(hit, n.landed_data, Array(n.sa_out)[sel])
        m.d.comb += self.sa_rd_data.eq(Mux(fresh, read, held))

    def _digests(self, m, n):
        """Each slot's digest takes the XOR deltas of the state-port and service writes,
        ``DIGEST_LATENCY`` and ``SERVICE_DIGEST_LATENCY`` cycles after their write cycles.
        Pipelined for the clock (``_write_delta``): a block RAM read, the hash's three
        adders and the digest XOR in one cycle made 44 MHz on an ECP5."""
        # The old value was read from the bank in the write's cycle, unless the previous
        # write landed on the same word then.
        old_hit = self._landing_hit(m, n, self.sa_wr_addr, "old_landing_hit", when=n.sa_wr_en)
        sa_old = Mux(old_hit, n.landed_data, Array(n.sa_out)[n.land_slot])
        deltas = [
            self._write_delta(m, "sa", n.land_valid, n.land_slot, n.land_off, sa_old,
                              n.land_data),
            self._write_delta(m, "svc", n.wr_en, n.r_slot, n.wr_off, n.wr_old, n.wr_new)]
        for slot in range(self.n_slots):
            digest = self.digest[slot]
            update = digest
            for valid, at, delta in deltas:
                update = update ^ Mux(valid & (at == slot), delta, 0)
            m.d.sync += digest.eq(update)

    def _write_delta(self, m, name, valid, slot, off, old, new):
        """(valid, slot, delta): the change a write of ``new`` over ``old`` makes to its
        slot's digest, two cycles on: the write is registered (so an old word from a block
        RAM is not hashed in the cycle it is read), then its delta."""
        h_valid, d_valid = Signal(name=f"{name}_hash_valid"), Signal(name=f"{name}_delta_valid")
        h_slot = Signal(self.slot_bits, name=f"{name}_hash_slot")
        d_slot = Signal(self.slot_bits, name=f"{name}_delta_slot")
        h_off = Signal(self.layout.addr_bits, name=f"{name}_hash_off")
        h_old, h_new = Signal(32, name=f"{name}_hash_old"), Signal(32, name=f"{name}_hash_new")
        delta = Signal(32, name=f"{name}_delta")
        m.d.sync += [h_valid.eq(valid), h_slot.eq(slot), h_off.eq(off), h_old.eq(old),
                     h_new.eq(new),
                     d_valid.eq(h_valid), d_slot.eq(h_slot),
                     delta.eq(word_hash(h_off, h_old) ^ word_hash(h_off, h_new))]
        return d_valid, d_slot, delta

    def _dirty_tracking(self, m, n):
        """Per-slot dirty-block bitmaps: marked by service writes, read-and-cleared."""
        lay = self.layout
        n_blocks = lay.n_blocks
        block_shift = lay.block_words.bit_length() - 1
        # A decoder, not `1 << block`: a shift by a wide value makes a 2**addr_bits-bit
        # intermediate that takes Amaranth minutes to elaborate for large images.
        mark = Signal(n_blocks)
        write_block = n.wr_off[block_shift:]
        for block in range(n_blocks):
            m.d.comb += mark[block].eq(n.wr_en & (write_block == block))
        read_mask = Signal(n_blocks)
        for word in range(lay.dirty_words):
            lo, hi = 32 * word, min(32 * word + 32, n_blocks)
            hit = self.dirty_rd_en & (self.dirty_rd_word == word)
            m.d.comb += read_mask[lo:hi].eq(Mux(hit, (1 << (hi - lo)) - 1, 0))
        bitmaps = []
        for slot in range(self.n_slots):
            bitmap = Signal(n_blocks, name=f"dirty_{slot}")
            cleared = Mux(self.dirty_rd_slot == slot, read_mask, 0)
            marked = Mux(n.r_slot == slot, mark, 0)
            m.d.sync += bitmap.eq(Mux(self.dirty_clear[slot], 0, (bitmap & ~cleared) | marked))
            m.d.comb += self.dirty_count[slot].eq(popcount(bitmap))
            bitmaps.append(Cat(bitmap, Const(0, 32 * lay.dirty_words - n_blocks)))
        selected = Array(bitmaps)[self.dirty_rd_slot].word_select(self.dirty_rd_word, 32)
        with m.If(self.dirty_rd_en):
            m.d.sync += self.dirty_rd_bits.eq(Mux(self.dirty_rd_slot < self.n_slots,
                                                  selected, 0))

    def _hold_release(self, m, n):
        """Slots whose ``irq_hold`` fell wait (``n.replay_pending``) for the FSM to replay
        their pending vectors; ``n.replay_slot`` is the lowest such slot."""
        hold_d = Signal(self.n_slots)
        m.d.sync += hold_d.eq(self.irq_hold)
        n.released = Signal(self.n_slots)
        m.d.comb += n.released.eq(hold_d & ~self.irq_hold)
        n.replay_pending = Signal(self.n_slots)
        n.replay_taken = Signal(self.n_slots)
        m.d.sync += n.replay_pending.eq((n.replay_pending & ~n.replay_taken) | n.released)
        n.replay_slot = Signal(self.slot_bits)
        for slot in reversed(range(self.n_slots)):  # the lowest pending slot wins
            with m.If(n.replay_pending[slot]):
                m.d.comb += n.replay_slot.eq(slot)

    def _request_fsm(self, m, n):
        """Serves one request at a time (READ/WRITE/ADD/NOTIFY), the reset sweep and the
        MSI-X replays; returns the FSM."""
        lay, n_slots = self.layout, self.n_slots
        addr_bits = lay.addr_bits
        vec_bits = bits_for(lay.msix_vectors)
        req, svc_data, r_slot = self.req.payload, n.svc_data, n.r_slot
        r_op = Signal(2)
        r_addr = Signal(addr_bits)
        r_data = Signal(32)
        r_tag = Signal(self.tag_bits)
        r_error = Signal()
        n.resp_data = resp_data = Signal(32)
        n.vec = vec = Signal(vec_bits)
        n.replay_all = replay_all = Signal()   # replaying every vector after a hold release
        latency = self.service_latency
        elapsed = Signal(range(latency + 1))
        with m.If(elapsed != latency):
            m.d.sync += elapsed.eq(elapsed + 1)

        rd_slot, rd_off = n.rd_slot, n.rd_off
        m.d.comb += rd_slot.eq(r_slot)
        n.vec_mask = Signal(32)
        m.d.comb += n.vec_mask.eq(Const(1, 32) << vec[:5])
        ctrl_rel = Signal(addr_bits)
        m.d.comb += ctrl_rel.eq(r_addr - lay.msix_base)
        is_ctrl = ((r_addr >= lay.msix_base) & (r_addr < lay.pba_base)
                   & (ctrl_rel[:2] == MSIX_CTRL))

        with m.FSM(init="CLEAR") as fsm:
            with m.State("CLEAR"):
                m.d.comb += n.clearing.eq(1)
                m.d.sync += n.clear_addr.eq(n.clear_addr + 1)
                with m.If(n.clear_addr == n_slots * lay.stride - 1):
                    m.next = "IDLE"

            with m.State("IDLE"):
                with m.If(n.replay_pending.any()):
                    m.d.comb += n.replay_taken.eq(1 << n.replay_slot)
                    m.d.sync += [r_slot.eq(n.replay_slot), vec.eq(0), replay_all.eq(1)]
                    m.next = "REPLAY_PBA"
                with m.Elif(~self.quiesce.bit_select(req.slot, 1)):
                    m.d.comb += self.req.ready.eq(1)
                    notify = req.op == int(Op.NOTIFY)
                    error = (req.slot >= n_slots) | Mux(notify, req.data >= lay.msix_vectors,
                                                        req.addr >= lay.image_words)
                    m.d.comb += [rd_slot.eq(req.slot),
                                 rd_off.eq(Mux(notify,
                                               self._msix(req.data[:vec_bits], MSIX_CTRL),
                                               req.addr))]
                    with m.If(self.req.valid):
                        m.d.sync += [r_slot.eq(req.slot), r_op.eq(req.op), r_addr.eq(req.addr),
                                     r_data.eq(req.data), r_tag.eq(req.tag), r_error.eq(error),
                                     vec.eq(req.data[:vec_bits]), replay_all.eq(0),
                                     resp_data.eq(0), elapsed.eq(1)]
                        with m.If(error):
                            m.next = "RESP"
                        with m.Elif(notify):
                            m.next = "NOTIFY_CTRL"
                        with m.Else():
                            m.next = "ACCESS"

            with m.State("ACCESS"):
                old = svc_data
                new = Signal(32)
                m.d.comb += new.eq(Mux(r_op == int(Op.WRITE), r_data, old + r_data))
                with m.If(r_op == int(Op.READ)):
                    m.d.sync += resp_data.eq(old)
                    m.next = "RESP"
                with m.Else():
                    self._write(m, n, r_addr, old, new)
                    with m.If(r_op == int(Op.ADD)):
                        m.d.sync += resp_data.eq(new)
                    # Unmasking a pending vector delivers it (GoldenVF._after_ctrl_write);
                    # REPLAY_CTRL re-reads the control word, so any control write goes there.
                    with m.If(is_ctrl):
                        m.d.sync += vec.eq(ctrl_rel[2:])
                        m.next = "REPLAY_PBA"
                    with m.Else():
                        m.next = "RESP"
                self._wait_for_bank(m, n, "ACCESS", r_addr)

            self._msix_states(m, n)

            with m.State("RESP"):
                m.d.comb += [self.resp.valid.eq(elapsed == latency),
                             self.resp.payload.slot.eq(r_slot), self.resp.payload.tag.eq(r_tag),
                             self.resp.payload.data.eq(resp_data),
                             self.resp.payload.error.eq(r_error)]
                with m.If(self.resp.valid & self.resp.ready):
                    m.next = "IDLE"
        return fsm

    def _msix(self, vector, which):
        """Image offset of word ``which`` of MSI-X table entry ``vector``."""
        return self.layout.msix_base + which + (vector << 2)

    def _pba(self, vector):
        """Image offset of the pending-bit-array word holding ``vector``."""
        return self.layout.pba_base + (vector >> 5)

    @staticmethod
    def _write(m, n, offset, old, new):
        """A service write this cycle (``old`` feeds the digest update)."""
        m.d.comb += [n.wr_req.eq(1), n.wr_off.eq(offset), n.wr_old.eq(old), n.wr_new.eq(new)]

    @staticmethod
    def _wait_for_bank(m, n, state, word):
        """Last in a state that writes: while a state-port write has the slot's bank, stay in
        ``state`` and read ``word`` (what the state acts on) again."""
        with m.If(n.wr_stall):
            m.d.comb += n.rd_off.eq(word)
            m.next = state

    def _next_vector(self, m, n):
        """After one vector: respond, or replay the next one, or finish the replay."""
        with m.If(~n.replay_all):
            m.next = "RESP"
        with m.Elif(n.vec == self.layout.msix_vectors - 1):
            m.next = "IDLE"
        with m.Else():
            m.d.sync += n.vec.eq(n.vec + 1)
            m.next = "REPLAY_PBA"

    def _msix_states(self, m, n):
        """The MSI-X states of the request FSM: NOTIFY (deliver, or set the pending bit
        when masked or held), REPLAY (deliver a pending vector once unmasked), SEND."""
        svc_data, vec, vec_mask, rd_off = n.svc_data, n.vec, n.vec_mask, n.rd_off
        hold = self.irq_hold.bit_select(n.r_slot, 1)
        pba_word = Signal(32)
        irq_addr = Signal(32)
        irq_data = Signal(32)
        pba = self._pba(vec)
        with m.State("NOTIFY_CTRL"):
            with m.If((svc_data & MSIX_CTRL_MASK).any() | hold):
                m.d.comb += rd_off.eq(pba)
                m.next = "NOTIFY_PBA"
            with m.Else():
                m.d.comb += rd_off.eq(self._msix(vec, MSIX_ADDR_LO))
                m.next = "IRQ_ADDR"

        with m.State("NOTIFY_PBA"):
            with m.If(~(svc_data & vec_mask).any()):
                self._write(m, n, pba, svc_data, svc_data | vec_mask)
            m.next = "RESP"
            self._wait_for_bank(m, n, "NOTIFY_PBA", pba)

        with m.State("REPLAY_PBA"):
            m.d.comb += rd_off.eq(pba)
            m.next = "REPLAY_BIT"

        with m.State("REPLAY_BIT"):
            m.d.sync += pba_word.eq(svc_data)
            with m.If((svc_data & vec_mask).any()):
                m.d.comb += rd_off.eq(self._msix(vec, MSIX_CTRL))
                m.next = "REPLAY_CTRL"
            with m.Else():
                self._next_vector(m, n)

        with m.State("REPLAY_CTRL"):
            with m.If((svc_data & MSIX_CTRL_MASK).any() | hold):
                self._next_vector(m, n)
            with m.Else():
                self._write(m, n, pba, pba_word, pba_word & ~vec_mask)
                m.d.comb += rd_off.eq(self._msix(vec, MSIX_ADDR_LO))
                m.next = "IRQ_ADDR"
            self._wait_for_bank(m, n, "REPLAY_CTRL", self._msix(vec, MSIX_CTRL))

        with m.State("IRQ_ADDR"):
            m.d.sync += irq_addr.eq(svc_data)
            m.d.comb += rd_off.eq(self._msix(vec, MSIX_DATA))
            m.next = "IRQ_DATA"

        with m.State("IRQ_DATA"):
            m.d.sync += irq_data.eq(svc_data)
            m.next = "SEND"

        with m.State("SEND"):
            m.d.comb += [self.irq.valid.eq(1), self.irq.payload.slot.eq(n.r_slot),
                         self.irq.payload.vector.eq(vec), self.irq.payload.addr.eq(irq_addr),
                         self.irq.payload.data.eq(irq_data)]
            with m.If(self.irq.ready):
                self._next_vector(m, n)
