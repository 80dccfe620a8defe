"""The VF router: the stable VF id the VM sees, mapped to (device, slot) (docs/design.md `router`).

The router keeps the VF table itself (VF id -> placed, device, slot, held), programmed over
a control stream. A held VF's requests wait, in order, in a per-VF queue while every other
VF keeps flowing; RELEASE at a new location drains that queue there before any newer
request of the VF. Responses find their requester through the device tag, which carries the
VF id (``Cat(tag, vf)``), so requests already inside a device when a hold starts are
answered to the right VF. The golden model is ``model/router.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hdl.formats import VF_ID_BITS
from model.common import bits_for, check_fault_inject, check_int
from model.router import CTL_OP_BITS, RouterOp
from model.state import OP_BITS, ImageLayout

__all__ = ["Router", "request_layout", "response_layout", "device_request_layout",
           "device_response_layout", "control_layout"]

_MAX_VFS = 255
_MAX_DEVICES = 8
_MAX_SLOTS = 256
_MAX_QUEUE_DEPTH = 1024
_MAX_IN_FLIGHT = 255
#: Deliberate bugs, for the negative formal test only: "drop_held" accepts a held VF's
#: request without queueing it (the request is lost); "ignore_in_flight" drops the
#: in-flight rule (a moved VF's next request goes to its new device while older ones are
#: still at the old one, so its responses can overtake them).
FAULT_INJECTIONS = ("drop_held", "ignore_in_flight")


# The layouts below have the fields, order and widths of hdl/formats.py's
# system_request/response_layout and vf_request/response_layout, so the router's ports
# connect (wiring.connect) to the system's VM side and to a VFUnit unchanged.
def request_layout(vf_bits: int, addr_bits: int, tag_bits: int) -> data.StructLayout:
    """A VM's request to VF ``vf``."""
    return data.StructLayout({"vf": vf_bits, "op": OP_BITS, "addr": addr_bits, "data": 32,
                              "tag": tag_bits})


def response_layout(vf_bits: int, tag_bits: int) -> data.StructLayout:
    return data.StructLayout({"vf": vf_bits, "tag": tag_bits, "data": 32, "error": 1})


def device_request_layout(n_slots: int, addr_bits: int, tag_bits: int) -> data.StructLayout:
    """A request to one slot of a device (``tag`` = Cat(VM tag, VF index))."""
    return data.StructLayout({"slot": bits_for(n_slots), "op": OP_BITS, "addr": addr_bits,
                              "data": 32, "tag": tag_bits})


def device_response_layout(n_slots: int, tag_bits: int) -> data.StructLayout:
    return data.StructLayout({"slot": bits_for(n_slots), "tag": tag_bits, "data": 32,
                              "error": 1})


def control_layout(vf_bits: int, n_devices: int, max_slots: int) -> data.StructLayout:
    """A table command: ``op`` is a ``model.router.RouterOp``."""
    return data.StructLayout({"op": CTL_OP_BITS, "vf": vf_bits, "device": bits_for(n_devices),
                              "slot": bits_for(max_slots)})


class Router(wiring.Component):
    """Routes VM requests by VF id to (device, slot), holds and releases VFs.

    Parameters
    ----------
    n_vfs : int
        VF ids 0..n_vfs-1 exist (1..255).
    n_devices : int
        Devices behind the router (1..8); device ``d`` has ``slots_per_device[d]`` slots.
    slots_per_device : sequence of int
        One entry (1..256) per device.
    addr_bits : int
        Width of the request address (default: the default ImageLayout's, 9).
    tag_bits : int
        Width of the VM's tag (1..16). Devices see ``tag_bits + bits_for(n_vfs)`` tag bits.
    queue_depth : int
        Requests a VF can have waiting in its queue (power of two, 1..1024).
    max_in_flight : int
        Requests one VF can have inside devices (or in the error path) before its next
        request waits in its queue (1..255).
    vf_bits : int or None
        Width of the ``vf`` fields of ``req``/``resp``/``ctl`` (default ``bits_for(n_vfs)``,
        as ``system_request_layout``; wider makes more unknown ids representable, up to 8).
    initial : sequence of (device, slot) or None, or None
        The table after reset, one entry per VF (None: not placed). Default: nothing placed.
        Nothing is held after reset.

    Members
    -------
    req : In(stream of request_layout)
        {vf, op, addr, data, tag} from the VMs.
    resp : Out(stream of response_layout)
        {vf, tag, data, error}: one per request. A device's response passes through
        unchanged (vf and tag recovered from its tag). A request to an unknown VF id
        (>= n_vfs), or to a VF neither placed nor held, gets a router error: error=1, data=0.
    dev_req_<d> (also ``dev_req[d]``) : Out(stream of device_request_layout)
        {slot, op, addr, data, tag=Cat(VM tag, VF index)} to device ``d``.
    dev_resp_<d> (also ``dev_resp[d]``) : In(stream of device_response_layout)
        {slot, tag, data, error} from device ``d``; ``slot`` is not used.
    ctl : In(stream of control_layout)
        {op, vf, device, slot}, ``op`` a RouterOp: PLACE (vf at device/slot; held
        unchanged), UNPLACE, HOLD, RELEASE (place at device/slot and stop holding: the queue
        drains there in order). A command with vf >= n_vfs or (PLACE/RELEASE) a device or
        slot that does not exist is ignored and counted. ``ctl.ready`` is always 1; a
        command takes effect for requests from the next cycle on (a request dispatched in
        the command's cycle went by the old table).
    held, placed : Out(n_vfs)
        The table, one bit per VF.
    vf_device, vf_slot : Out(ArrayLayout(.., n_vfs))
        Where each VF is (meaningful while ``placed``).
    queued : Out(ArrayLayout(bits_for(queue_depth + 1), n_vfs))
        Requests waiting in each VF's queue.
    queued_total : Out(bits_for(n_vfs * queue_depth + 1))
        Sum of ``queued``.
    in_flight : Out(ArrayLayout(bits_for(max_in_flight + 1), n_vfs))
        Each VF's requests dispatched and not yet answered on ``resp`` (a VF with
        ``in_flight == 0`` has nothing left at its old location).
    requests, queued_requests, error_responses : Out(32)
        Requests accepted on ``req``; of those, the ones that went through a queue;
        router error responses sent (all wrap around).
    ctl_errors : Out(16)
        Commands ignored as invalid.

    Behaviour, latency and backpressure
    -----------------------------------
    * A request of VF ``v`` is *dispatched* (to its device, or to the error path when ``v``
      is not placed) straight from ``req`` in the cycle it is accepted (0 cycles,
      combinational) when ``v`` is not held, its queue is empty and its in-flight rule
      (below) allows it. If the target does not take it in that cycle (device
      backpressure, or a queued request won the target), it is written to ``v``'s queue
      instead. So for a known VF ``req.ready`` is ``queued[v] < queue_depth``: it does not
      depend on any device's ready. Only a VF whose queue is full stalls ``req`` (head-of-
      line backpressure: keep ``queue_depth`` above what a VF sends during its downtime).
    * Unknown VF ids go to the error path directly; ``req.ready`` then depends on the error
      FIFO having space. Router error responses appear on ``resp`` 2 cycles after the
      request (or queue entry) leaves, at the earliest.
    * One queue entry per cycle leaves the queues (all VFs), chosen round robin among the
      VFs that are not held, have entries, and may dispatch; a queue entry is visible to
      the drain the cycle after it was written. A queued request has priority over a
      direct one for the same target (it is older); the loser of a direct request is
      queued, not stalled.
    * In-flight rule, so responses of one VF stay in order when it moves: a request of ``v``
      goes to target T (a device, or the error path) only when ``in_flight[v] == 0``, or
      when its in-flight requests are all at T (devices answer in request order) and
      ``in_flight[v] < max_in_flight``. So after a RELEASE (or PLACE) at another device,
      the VF's queue drains once every response from the old device came back.
    * A RELEASE accepted in cycle ``t``: the VF's queue head can be offered from ``t + 1``
      (in-flight rule permitting), then one entry per cycle as the round robin allows.
    * ``dev_req[d]`` may withdraw a request (valid falls, or the payload changes, with no
      transfer): a request offered to a device that does not take it (for example a
      quiesced slot of a VFUnit, whose ready depends on the payload's slot) is queued
      instead, and a VF that becomes held stops being offered. No combinational path runs
      from any ``dev_req[d].ready`` to ``req.ready``.
    * ``resp`` merges the devices and the error path round robin (a source granted and
      stalled by ``resp.ready`` keeps the grant, so ``resp`` is stable until taken);
      ``dev_resp[d].ready`` = ``resp.ready`` while ``d`` is granted. Devices must answer in
      request order (VFUnit does).
    * Per VF: responses on ``resp`` come in the order the requests were accepted on ``req``;
      queued requests are never dropped; a held VF's queue waits for RELEASE (a VF that is
      held and not placed waits too: RELEASE places it).

    Resources: the queues are one memory of ``n_vfs * queue_depth`` entries of
    {op, addr, data, tag} with one write and one asynchronous read port (LUT RAM); per VF a
    few registers (location, two queue pointers, in-flight count and target); a 4-entry
    error FIFO.
    """

    def __init__(self, n_vfs: int, *, n_devices: int = 2,
                 slots_per_device: Sequence[int] = (8, 4), addr_bits: int | None = None,
                 tag_bits: int = 8, queue_depth: int = 4, max_in_flight: int = 15,
                 vf_bits: int | None = None,
                 initial: Sequence[tuple[int, int] | None] | None = None,
                 _fault_inject: str | None = None):
        self._fault_inject = check_fault_inject("Router", _fault_inject, FAULT_INJECTIONS)
        check_int("Router", "n_vfs", n_vfs, 1, _MAX_VFS)
        check_int("Router", "n_devices", n_devices, 1, _MAX_DEVICES)
        if isinstance(slots_per_device, (str, bytes)) or not isinstance(slots_per_device,
                                                                         Sequence):
            raise TypeError(f"Router slots_per_device must be a sequence of integers, "
                            f"not {slots_per_device!r}")
        if len(slots_per_device) != n_devices:
            raise ValueError(f"Router slots_per_device must have n_devices={n_devices} "
                             f"entries, not {len(slots_per_device)}")
        for slots in slots_per_device:
            check_int("Router", "slots_per_device entry", slots, 1, _MAX_SLOTS)
        if addr_bits is None:
            addr_bits = ImageLayout().addr_bits
        check_int("Router", "addr_bits", addr_bits, 1, 32)
        check_int("Router", "tag_bits", tag_bits, 1, 16)
        check_int("Router", "queue_depth", queue_depth, 1, _MAX_QUEUE_DEPTH)
        if queue_depth & (queue_depth - 1):
            raise ValueError(f"Router queue_depth must be a power of two, not {queue_depth}")
        check_int("Router", "max_in_flight", max_in_flight, 1, _MAX_IN_FLIGHT)
        if vf_bits is None:
            vf_bits = bits_for(n_vfs)
        check_int("Router", "vf_bits", vf_bits, bits_for(n_vfs), 8)
        if initial is not None:
            if len(initial) != n_vfs:
                raise ValueError(f"Router initial must have n_vfs={n_vfs} entries, "
                                 f"not {len(initial)}")
            for vf, where in enumerate(initial):
                if where is None:
                    continue
                device, slot = where
                if not (0 <= device < n_devices and 0 <= slot < slots_per_device[device]):
                    raise ValueError(f"Router initial[{vf}] = {where!r} is not a (device, "
                                     f"slot) that exists")
        self.n_vfs, self.n_devices = n_vfs, n_devices
        self.slots_per_device = tuple(slots_per_device)
        self.addr_bits, self.tag_bits, self.vf_bits = addr_bits, tag_bits, vf_bits
        self.queue_depth, self.max_in_flight = queue_depth, max_in_flight
        self.initial = tuple(initial) if initial is not None else (None,) * n_vfs
        #: VF index bits carried in the device tag; devices need ``device_tag_bits`` of tag.
        self.index_bits = bits_for(n_vfs)
        self.device_tag_bits = tag_bits + self.index_bits
        max_slots = max(self.slots_per_device)
        members = {
            "req": In(stream.Signature(request_layout(vf_bits, addr_bits, tag_bits))),
            "resp": Out(stream.Signature(response_layout(vf_bits, tag_bits))),
            "ctl": In(stream.Signature(control_layout(vf_bits, n_devices, max_slots))),
            "held": Out(n_vfs), "placed": Out(n_vfs),
            "vf_device": Out(data.ArrayLayout(bits_for(n_devices), n_vfs)),
            "vf_slot": Out(data.ArrayLayout(bits_for(max_slots), n_vfs)),
            "queued": Out(data.ArrayLayout(bits_for(queue_depth + 1), n_vfs)),
            "queued_total": Out(bits_for(n_vfs * queue_depth + 1)),
            "in_flight": Out(data.ArrayLayout(bits_for(max_in_flight + 1), n_vfs)),
            "requests": Out(32), "queued_requests": Out(32), "error_responses": Out(32),
            "ctl_errors": Out(16),
        }
        for d, slots in enumerate(self.slots_per_device):
            members[f"dev_req_{d}"] = Out(stream.Signature(
                device_request_layout(slots, addr_bits, self.device_tag_bits)))
            members[f"dev_resp_{d}"] = In(stream.Signature(
                device_response_layout(slots, self.device_tag_bits)))
        super().__init__(members)

    @classmethod
    def for_system(cls, config) -> Router:
        """The router of a ``model.config.SystemConfig`` system: device 0 the host, 1 the
        offload device, VF i placed in host slot i after reset (as the system starts), its
        queue depth and in-flight limit from the configuration."""
        return cls(config.n_vfs, n_devices=2,
                   slots_per_device=(config.host_slots, config.offload_slots),
                   addr_bits=config.layout.addr_bits, tag_bits=config.tag_bits,
                   queue_depth=config.router_queue_depth,
                   max_in_flight=config.router_max_in_flight,
                   vf_bits=VF_ID_BITS, initial=[(0, vf) for vf in range(config.n_vfs)])

    @property
    def dev_req(self) -> tuple:
        return tuple(getattr(self, f"dev_req_{d}") for d in range(self.n_devices))

    @property
    def dev_resp(self) -> tuple:
        return tuple(getattr(self, f"dev_resp_{d}") for d in range(self.n_devices))

    def elaborate(self, platform):
        m = Module()
        s = self._vf_table(m)
        self._queue_memory(m, s)
        self._head(m, s)
        self._drain(m, s)
        self._targets(m, s)
        self._accept(m, s)
        self._responses(m, s)
        self._per_vf_updates(m, s)
        self._control(m, s)
        self._counters(m, s)
        return m

    def _vf_table(self, m: Module) -> SimpleNamespace:
        """The VF table and per-VF queue / in-flight state, and what follows from them."""
        n, depth = self.n_vfs, self.queue_depth
        s = SimpleNamespace(ptr_bits=depth.bit_length() - 1, err=self.n_devices,
                            n_targets=self.n_devices + 1)
        s.tgt_bits = bits_for(s.n_targets)
        dev_bits = bits_for(self.n_devices)
        slot_bits = bits_for(max(self.slots_per_device))
        placed_init = sum(1 << v for v, w in enumerate(self.initial) if w is not None)
        s.placed = Signal(n, init=placed_init)
        s.held = Signal(n)
        s.loc_dev = [Signal(dev_bits, name=f"dev_{v}", init=(w or (0, 0))[0])
                     for v, w in enumerate(self.initial)]
        s.loc_slot = [Signal(slot_bits, name=f"slot_{v}", init=(w or (0, 0))[1])
                      for v, w in enumerate(self.initial)]
        # Queue pointers with a wrap bit: empty when equal, full when depth apart.
        s.wr_ptr = [Signal(s.ptr_bits + 1, name=f"wr_ptr_{v}") for v in range(n)]
        s.rd_ptr = [Signal(s.ptr_bits + 1, name=f"rd_ptr_{v}") for v in range(n)]
        s.fl_count = [Signal(range(self.max_in_flight + 1), name=f"in_flight_{v}")
                      for v in range(n)]
        s.fl_target = [Signal(s.tgt_bits, name=f"in_flight_target_{v}") for v in range(n)]
        s.empty, s.full, s.may_go, s.eligible = (Signal(n, name=x) for x in
                                                 ("empty", "full", "may_go", "eligible"))
        s.target = [Signal(s.tgt_bits, name=f"target_{v}") for v in range(n)]
        ignore_in_flight = self._fault_inject == "ignore_in_flight"
        for v in range(n):
            count = Signal(s.ptr_bits + 1, name=f"count_{v}")
            m.d.comb += [
                count.eq(s.wr_ptr[v] - s.rd_ptr[v]),
                s.empty[v].eq(s.wr_ptr[v] == s.rd_ptr[v]),
                s.full[v].eq(count == depth),
                s.target[v].eq(Mux(s.placed[v], s.loc_dev[v], s.err)),
                s.may_go[v].eq(1 if ignore_in_flight else
                               (s.fl_count[v] == 0)
                               | ((s.fl_target[v] == s.target[v])
                                  & (s.fl_count[v] != self.max_in_flight))),
                s.eligible[v].eq(~s.empty[v] & ~s.held[v] & s.may_go[v]),
                self.queued[v].eq(count),
                self.in_flight[v].eq(s.fl_count[v]),
                self.vf_device[v].eq(s.loc_dev[v]),
                self.vf_slot[v].eq(s.loc_slot[v]),
            ]
        m.d.comb += [self.held.eq(s.held), self.placed.eq(s.placed)]
        s.target_of, s.slot_of = Array(s.target), Array(s.loc_slot)
        s.wr_of, s.rd_of = Array(s.wr_ptr), Array(s.rd_ptr)
        return s

    def _queue_memory(self, m: Module, s: SimpleNamespace) -> None:
        entry = data.StructLayout({"op": OP_BITS, "addr": self.addr_bits, "data": 32,
                                   "tag": self.tag_bits})
        m.submodules.queue_mem = mem = Memory(shape=entry, depth=self.n_vfs * self.queue_depth,
                                              init=[])
        s.wport = mem.write_port()
        s.rport = mem.read_port(domain="comb")

    def _head(self, m: Module, s: SimpleNamespace) -> None:
        """The direct path: the request at the head of ``req``."""
        req = self.req.payload
        s.known = Signal()
        s.h = Signal(self.index_bits)     # VF index of the head request (when known)
        s.h_target = Signal(s.tgt_bits)
        s.h_free = Signal()               # may bypass the queue
        m.d.comb += [
            s.known.eq(req.vf < self.n_vfs),
            s.h.eq(req.vf[:self.index_bits]),
            s.h_target.eq(Mux(s.known, s.target_of[s.h], s.err)),
            s.h_free.eq(~s.known | (~s.held.bit_select(s.h, 1) & s.empty.bit_select(s.h, 1)
                                    & s.may_go.bit_select(s.h, 1))),
        ]

    def _drain(self, m: Module, s: SimpleNamespace) -> None:
        """Round robin over the eligible VFs' queue heads, starting at ``rotate``."""
        n = self.n_vfs
        rotate = Signal(range(n))
        upper = Signal(n)
        pool = Signal(n)
        s.dv = Signal(self.index_bits)    # VF whose queue head is offered this cycle
        s.drain_valid = Signal()
        dv_rd = Signal(s.ptr_bits + 1)
        s.q_target = Signal(s.tgt_bits)
        m.d.comb += [
            upper.eq(s.eligible & (Const((1 << n) - 1, n) << rotate)[:n]),
            pool.eq(Mux(upper.any(), upper, s.eligible)),
            s.drain_valid.eq(s.eligible.any()),
            s.q_target.eq(s.target_of[s.dv]),
            dv_rd.eq(s.rd_of[s.dv]),
            s.rport.addr.eq(Cat(dv_rd[:s.ptr_bits], s.dv)),
        ]
        for v in reversed(range(n)):
            with m.If(pool[v]):
                m.d.comb += s.dv.eq(v)
        with m.If(s.drain_valid):
            m.d.sync += rotate.eq(Mux(s.dv == n - 1, 0, s.dv + 1))
        s.queued = s.rport.data

    def _targets(self, m: Module, s: SimpleNamespace) -> None:
        """The targets: devices 0..n_devices-1, and the error FIFO (target ``err``)."""
        req, queued, dv, h = self.req.payload, s.queued, s.dv, s.h
        m.submodules.error_fifo = s.err_fifo = err_fifo = SyncFIFOBuffered(
            width=self.vf_bits + self.tag_bits, depth=4)
        d_fire_any, q_fire_any = [], []
        for t in range(s.n_targets):
            q_wants = Signal(name=f"q_wants_{t}")
            d_wants = Signal(name=f"d_wants_{t}")
            q_fire = Signal(name=f"q_fire_{t}")
            d_fire = Signal(name=f"d_fire_{t}")
            ready = Signal(name=f"target_ready_{t}")
            m.d.comb += [
                q_wants.eq(s.drain_valid & (s.q_target == t)),
                d_wants.eq(self.req.valid & s.h_free & (s.h_target == t)),
                q_fire.eq(q_wants & ready),
                d_fire.eq(d_wants & ~q_wants & ready),
            ]
            d_fire_any.append(d_fire)
            q_fire_any.append(q_fire)
            if t == s.err:
                m.d.comb += [
                    ready.eq(err_fifo.w_rdy),
                    err_fifo.w_en.eq(q_wants | d_wants),
                    err_fifo.w_data.eq(Mux(q_wants, Cat(queued.tag, dv),
                                           Cat(req.tag, req.vf))),
                ]
                continue
            port = self.dev_req[t]
            sel = Signal(self.index_bits, name=f"dev_{t}_vf")
            m.d.comb += [
                sel.eq(Mux(q_wants, dv, h)),
                port.valid.eq(q_wants | d_wants),
                port.payload.slot.eq(s.slot_of[sel]),
                port.payload.op.eq(Mux(q_wants, queued.op, req.op)),
                port.payload.addr.eq(Mux(q_wants, queued.addr, req.addr)),
                port.payload.data.eq(Mux(q_wants, queued.data, req.data)),
                port.payload.tag.eq(Cat(Mux(q_wants, queued.tag, req.tag), sel)),
                ready.eq(port.ready),
            ]
        s.direct = Signal()
        s.drained = Signal()
        m.d.comb += [s.direct.eq(Cat(*d_fire_any).any()),
                     s.drained.eq(Cat(*q_fire_any).any())]

    def _accept(self, m: Module, s: SimpleNamespace) -> None:
        """A known VF's request is taken whenever its queue has room: dispatched if its
        target takes it now, else queued."""
        req, h = self.req.payload, s.h
        s.enqueue = Signal()
        keep = ~s.held.bit_select(h, 1) if self._fault_inject == "drop_held" else 1
        m.d.comb += [
            self.req.ready.eq(Mux(s.known, ~s.full.bit_select(h, 1),
                                  s.err_fifo.w_rdy & ~(s.drain_valid & (s.q_target == s.err)))),
            s.enqueue.eq(self.req.valid & s.known & ~s.full.bit_select(h, 1) & ~s.direct
                         & keep),
            s.wport.en.eq(s.enqueue),
            s.wport.addr.eq(Cat(s.wr_of[h][:s.ptr_bits], h)),
            s.wport.data.op.eq(req.op), s.wport.data.addr.eq(req.addr),
            s.wport.data.data.eq(req.data), s.wport.data.tag.eq(req.tag),
        ]

    def _responses(self, m: Module, s: SimpleNamespace) -> None:
        """Devices and the error FIFO onto ``resp``, round robin, grant kept while stalled."""
        tag_bits, err_fifo = self.tag_bits, s.err_fifo
        n_src = s.n_targets
        src_valid = Cat(*(p.valid for p in self.dev_resp), err_fifo.r_rdy)
        last = Signal(range(n_src), init=n_src - 1)
        locked = Signal()
        locked_pick = Signal(range(n_src))
        s.pick = pick = Signal(range(n_src))
        with m.If(locked):
            m.d.comb += pick.eq(locked_pick)
        with m.Else():
            with m.Switch(last):
                for prev in range(n_src):
                    with m.Case(prev):
                        for k in reversed(range(1, n_src + 1)):
                            with m.If(src_valid[(prev + k) % n_src]):
                                m.d.comb += pick.eq((prev + k) % n_src)
        resp = self.resp.payload
        with m.Switch(pick):
            for d, port in enumerate(self.dev_resp):
                with m.Case(d):
                    m.d.comb += [
                        self.resp.valid.eq(port.valid),
                        port.ready.eq(self.resp.ready),
                        resp.vf.eq(port.payload.tag[tag_bits:]),
                        resp.tag.eq(port.payload.tag[:tag_bits]),
                        resp.data.eq(port.payload.data),
                        resp.error.eq(port.payload.error),
                    ]
            with m.Case(s.err):
                m.d.comb += [
                    self.resp.valid.eq(err_fifo.r_rdy),
                    err_fifo.r_en.eq(self.resp.ready),
                    resp.tag.eq(err_fifo.r_data[:tag_bits]),
                    resp.vf.eq(err_fifo.r_data[tag_bits:]),
                    resp.error.eq(1),
                ]
        s.resp_fire = Signal()
        m.d.comb += s.resp_fire.eq(self.resp.valid & self.resp.ready)
        m.d.sync += [locked.eq(self.resp.valid & ~self.resp.ready), locked_pick.eq(pick)]
        with m.If(s.resp_fire):
            m.d.sync += last.eq(pick)

    def _per_vf_updates(self, m: Module, s: SimpleNamespace) -> None:
        resp = self.resp.payload
        answered = Signal()
        m.d.comb += answered.eq(s.resp_fire & (resp.vf < self.n_vfs))
        for v in range(self.n_vfs):
            direct_v = s.direct & s.known & (s.h == v)
            drained_v = s.drained & (s.dv == v)
            with m.If(s.enqueue & (s.h == v)):
                m.d.sync += s.wr_ptr[v].eq(s.wr_ptr[v] + 1)
            with m.If(drained_v):
                m.d.sync += s.rd_ptr[v].eq(s.rd_ptr[v] + 1)
            m.d.sync += s.fl_count[v].eq(s.fl_count[v] + (direct_v | drained_v)
                                         - (answered & (resp.vf[:self.index_bits] == v)))
            with m.If(direct_v):
                m.d.sync += s.fl_target[v].eq(s.h_target)
            with m.If(drained_v):
                m.d.sync += s.fl_target[v].eq(s.q_target)

    def _control(self, m: Module, s: SimpleNamespace) -> None:
        ctl = self.ctl.payload
        m.d.comb += self.ctl.ready.eq(1)
        location_ok = Signal()
        with m.Switch(ctl.device):
            for d, slots in enumerate(self.slots_per_device):
                with m.Case(d):
                    m.d.comb += location_ok.eq(ctl.slot < slots)
        needs_location = (ctl.op == RouterOp.PLACE) | (ctl.op == RouterOp.RELEASE)
        command_ok = Signal()
        m.d.comb += command_ok.eq((ctl.vf < self.n_vfs) & (~needs_location | location_ok))
        with m.If(self.ctl.valid):
            with m.If(~command_ok):
                m.d.sync += self.ctl_errors.eq(self.ctl_errors + 1)
            for v in range(self.n_vfs):
                with m.If(command_ok & (ctl.vf == v)):
                    with m.Switch(ctl.op):
                        with m.Case(RouterOp.PLACE, RouterOp.RELEASE):
                            m.d.sync += [s.placed[v].eq(1), s.loc_dev[v].eq(ctl.device),
                                         s.loc_slot[v].eq(ctl.slot)]
                        with m.Case(RouterOp.UNPLACE):
                            m.d.sync += s.placed[v].eq(0)
                        with m.Case(RouterOp.HOLD):
                            m.d.sync += s.held[v].eq(1)
                    with m.If(ctl.op == RouterOp.RELEASE):
                        m.d.sync += s.held[v].eq(0)

    def _counters(self, m: Module, s: SimpleNamespace) -> None:
        with m.If(self.req.valid & self.req.ready):
            m.d.sync += self.requests.eq(self.requests + 1)
        with m.If(s.enqueue):
            m.d.sync += self.queued_requests.eq(self.queued_requests + 1)
        with m.If(s.resp_fire & (s.pick == s.err)):
            m.d.sync += self.error_responses.eq(self.error_responses + 1)
        m.d.sync += self.queued_total.eq(self.queued_total + s.enqueue - s.drained)
