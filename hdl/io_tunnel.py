"""The TC_IO tunnel (docs/design.md `link`): VF I/O of VFs on the offload device over the link.

Requests the router sends to the offload device, and the offload unit's responses and
interrupts, travel as TC_IO messages (``model/io_message.py``: the encoding and its Python
reference) through the two ``LinkPort``s. The block has two halves, one per device:

    host:    router.dev_req[OFFLOAD] -> IoTunnelHost.req  ... to_link -> LinkPort.io_in
             LinkPort.io_out -> from_link ... IoTunnelHost.resp -> router.dev_resp[OFFLOAD]
                                              IoTunnelHost.irq  -> the interrupt merge
    offload: LinkPort.io_out -> from_link ... IoTunnelDevice.req -> VFUnit.req
             VFUnit.resp -> IoTunnelDevice.resp, VFUnit.irq -> IoTunnelDevice.irq
                                              ... to_link -> LinkPort.io_in

Both halves are built from ``IoEncoder`` (record stream -> message stream) and
``IoDecoder`` (message stream -> one record stream per kind it accepts); the device half
merges its two encoders with a ``PacketArbiter`` (round robin per message).
"""

# No ``from __future__ import annotations``: wiring.Component reads the member annotations.
from collections.abc import Mapping

from amaranth.hdl import Array, Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from model.io_message import (
    IO_FIELDS,
    KIND_FIELD,
    MAX_MESSAGE_WORDS,
    MESSAGE_WORDS,
    IoKind,
    check_widths,
)

from .formats import ChunkBeat, bits_for, irq_layout, vf_request_layout, vf_response_layout
from .packet_arbiter import PacketArbiter

__all__ = ["IoEncoder", "IoDecoder", "IoTunnelHost", "IoTunnelDevice", "offload_layouts"]


def _check_layout(owner: str, name: str, layout, kind: IoKind) -> data.Layout:
    if not isinstance(layout, data.Layout):
        raise TypeError(f"{owner} {name} must be an amaranth data.Layout, not {layout!r}")
    check_widths(kind, {field: f.width for field, f in layout}, f"{owner} {name}")
    return layout


def offload_layouts(config) -> dict[IoKind, data.Layout]:
    """The record layouts of a ``model.config.SystemConfig``'s offload device, as the
    system builds its router and VFUnit: request and response tags carry the VM tag and
    the VF index (``tag_bits + bits_for(n_vfs)``)."""
    slots = config.offload_slots
    tag_bits = config.tag_bits + bits_for(config.n_vfs)
    return {IoKind.REQ: vf_request_layout(config.layout, slots, tag_bits),
            IoKind.RESP: vf_response_layout(slots, tag_bits),
            IoKind.IRQ: irq_layout(config.layout, slots)}


class IoEncoder(wiring.Component):
    """Serialises records of one kind into TC_IO messages (``model.io_message.encode``).

    Parameters
    ----------
    kind : IoKind
    layout : data.Layout
        The record: exactly the fields of ``IO_FIELDS[kind]``, each at most its width there.

    Members
    -------
    record : In(stream of layout)
    message : Out(stream of ChunkBeat)
        ``MESSAGE_WORDS[kind]`` beats per record, ``last`` on the final one.

    Latency 1 cycle (the record is registered as it is accepted, so ``record.ready`` is 1
    whenever no message is being sent and a source may offer and withdraw a record freely).
    Throughput one beat per cycle: the next record is taken in the cycle the last beat
    leaves. Backpressure on ``message`` holds the current beat and, on the last beat,
    ``record.ready``.
    """

    def __init__(self, kind: IoKind, layout: data.Layout):
        if not isinstance(kind, IoKind):
            raise TypeError(f"IoEncoder kind must be an IoKind, not {kind!r}")
        self.kind = kind
        self.layout = _check_layout("IoEncoder", "layout", layout, kind)
        super().__init__({
            "record": In(stream.Signature(layout)),
            "message": Out(stream.Signature(ChunkBeat)),
        })

    def elaborate(self, platform):
        m = Module()
        n_words = MESSAGE_WORDS[self.kind]
        held = Signal(self.layout)
        busy = Signal()
        index = Signal(range(n_words))

        words = [Signal(32, name=f"word{i}") for i in range(n_words)]
        lsb, width = KIND_FIELD
        m.d.comb += words[0][lsb:lsb + width].eq(int(self.kind))
        for name, (word, lsb, _) in IO_FIELDS[self.kind].items():
            field = getattr(held, name)
            m.d.comb += words[word][lsb:lsb + len(field)].eq(field)

        last = index == n_words - 1
        m.d.comb += [
            self.message.valid.eq(busy),
            self.message.payload.data.eq(Array(words)[index]),
            self.message.payload.last.eq(last),
            self.record.ready.eq(~busy | (self.message.ready & last)),
        ]
        with m.If(self.message.valid & self.message.ready):
            m.d.sync += index.eq(0 if n_words == 1 else index + 1)
            with m.If(last):
                m.d.sync += [index.eq(0), busy.eq(0)]
        with m.If(self.record.valid & self.record.ready):
            m.d.sync += [held.eq(self.record.payload), busy.eq(1)]
        return m


class IoDecoder(wiring.Component):
    """Deserialises TC_IO messages into one record stream per accepted kind
    (``model.io_message.decode``); drops and counts malformed messages.

    Parameters
    ----------
    layouts : mapping of IoKind to data.Layout
        The kinds this side accepts (at least one) and their record layouts. A message of
        any other kind is malformed.

    Members
    -------
    message : In(stream of ChunkBeat)
    <kind> (``req``, ``resp``, ``irq``; also ``records[kind]``) : Out(stream of layout)
        One record per well-formed message of that kind, in message order. Fields wider
        in the message than in the layout are truncated (their upper bits are ignored).
    malformed : Out(32)
        Messages dropped: unknown kind, or a word count other than the kind's (wraps).

    Latency: a record is valid the cycle after the message's last beat is accepted.
    Throughput one beat per cycle. Backpressure: the last beat of a message waits
    (``message.ready`` = 0, decided from the beat itself) while its kind's output holds a
    record its consumer does not take in this cycle; every other beat is taken at once. So
    a stalled consumer of one kind holds up the link only from the second message of that
    kind on (the messages are one ordered stream), and a malformed message never waits.
    """

    def __init__(self, layouts: Mapping[IoKind, data.Layout]):
        if not isinstance(layouts, Mapping) or not layouts:
            raise TypeError(f"IoDecoder layouts must be a non-empty mapping of IoKind to "
                            f"data.Layout, not {layouts!r}")
        for kind in layouts:
            if not isinstance(kind, IoKind):
                raise TypeError(f"IoDecoder layouts keys must be IoKind, not {kind!r}")
        self.layouts = {kind: _check_layout("IoDecoder", f"{kind.name} layout", layout, kind)
                        for kind, layout in sorted(layouts.items())}
        members = {kind.name.lower(): Out(stream.Signature(layout))
                   for kind, layout in self.layouts.items()}
        super().__init__({"message": In(stream.Signature(ChunkBeat)), **members,
                          "malformed": Out(32)})

    @property
    def records(self) -> dict:
        return {kind: getattr(self, kind.name.lower()) for kind in self.layouts}

    def elaborate(self, platform):
        m = Module()
        beat = self.message.payload
        # Words of the message so far; `index` saturates above every valid length so an
        # overlong message can never look well formed.
        words = [Signal(32, name=f"word{i}") for i in range(MAX_MESSAGE_WORDS)]
        index = Signal(range(MAX_MESSAGE_WORDS + 2))
        # The message as it stands with the current beat in place (used at its last beat).
        view = [Signal(32, name=f"view{i}") for i in range(MAX_MESSAGE_WORDS)]
        for i in range(MAX_MESSAGE_WORDS):
            m.d.comb += view[i].eq(words[i])
            with m.If(index == i):
                m.d.comb += view[i].eq(beat.data)

        lsb, width = KIND_FIELD
        kind = view[0][lsb:lsb + width]
        outputs = self.records
        # Only the last beat of a message waits, and only for its own kind's output: a
        # stalled consumer of one kind lets messages of the other kinds pass.
        stalled = Signal()
        for k, port in outputs.items():
            with m.If(beat.last & (kind == int(k)) & port.valid & ~port.ready):
                m.d.comb += stalled.eq(1)
            with m.If(port.ready):
                m.d.sync += port.valid.eq(0)
        m.d.comb += self.message.ready.eq(~stalled)

        with m.If(self.message.valid & self.message.ready):
            for i in range(MAX_MESSAGE_WORDS):
                with m.If(index == i):
                    m.d.sync += words[i].eq(beat.data)
            with m.If(index <= MAX_MESSAGE_WORDS):
                m.d.sync += index.eq(index + 1)
            with m.If(beat.last):
                m.d.sync += index.eq(0)
                good = Signal()
                for k, port in outputs.items():
                    with m.If((kind == int(k)) & (index == MESSAGE_WORDS[k] - 1)):
                        m.d.comb += good.eq(1)
                        m.d.sync += port.valid.eq(1)
                        for name, (word, f_lsb, _) in IO_FIELDS[k].items():
                            field = getattr(port.payload, name)
                            m.d.sync += field.eq(view[word][f_lsb:f_lsb + len(field)])
                with m.If(~good):
                    m.d.sync += self.malformed.eq(self.malformed + 1)
        return m


class IoTunnelHost(wiring.Component):
    """The host's half of the TC_IO tunnel: requests down, responses and interrupts up.

    Parameters
    ----------
    request_layout, response_layout, irq_layout : data.Layout
        Records of the offload device (``hdl.formats.vf_request_layout`` etc., or the
        router's device layouts): exactly the fields of ``model.io_message.IO_FIELDS``.
        ``IoTunnelHost.for_system(config)`` builds them from a SystemConfig.

    Members
    -------
    req : In(stream of request_layout)
        Requests for the offload device (from ``router.dev_req[OFFLOAD]``).
    to_link : Out(stream of ChunkBeat)
        REQ messages (to the host ``LinkPort.io_in``).
    from_link : In(stream of ChunkBeat)
        RESP and IRQ messages (from the host ``LinkPort.io_out``).
    resp : Out(stream of response_layout)
        The offload device's responses, in its order (to ``router.dev_resp[OFFLOAD]``).
    irq : Out(stream of irq_layout)
        The offload device's MSI-X messages, in its order (to the interrupt merge).
    malformed : Out(32)
        Messages from the link dropped as malformed (a REQ is malformed here).

    Latency: ``req`` to the first beat on ``to_link`` 1 cycle, one 4-beat message per
    request; last beat on ``from_link`` to ``resp``/``irq`` valid 1 cycle. Both directions
    run at one beat per cycle. Backpressure: ``req.ready`` is 1 whenever no message is in
    progress (a request can be offered and withdrawn: the router may queue it instead).
    Responses and interrupts share ``from_link``: a stalled ``irq`` consumer lets
    responses pass while one interrupt waits in ``irq``, and stalls ``from_link`` at the
    next interrupt's last beat (and the other way round).
    """

    def __init__(self, request_layout: data.Layout, response_layout: data.Layout,
                 irq_layout: data.Layout):
        self.request_layout = _check_layout("IoTunnelHost", "request_layout", request_layout,
                                            IoKind.REQ)
        self.response_layout = _check_layout("IoTunnelHost", "response_layout",
                                             response_layout, IoKind.RESP)
        self.irq_layout = _check_layout("IoTunnelHost", "irq_layout", irq_layout, IoKind.IRQ)
        super().__init__({
            "req": In(stream.Signature(request_layout)),
            "to_link": Out(stream.Signature(ChunkBeat)),
            "from_link": In(stream.Signature(ChunkBeat)),
            "resp": Out(stream.Signature(response_layout)),
            "irq": Out(stream.Signature(irq_layout)),
            "malformed": Out(32),
        })

    @classmethod
    def for_system(cls, config) -> "IoTunnelHost":
        lay = offload_layouts(config)
        return cls(lay[IoKind.REQ], lay[IoKind.RESP], lay[IoKind.IRQ])

    def elaborate(self, platform):
        m = Module()
        m.submodules.encoder = encoder = IoEncoder(IoKind.REQ, self.request_layout)
        m.submodules.decoder = decoder = IoDecoder({IoKind.RESP: self.response_layout,
                                                    IoKind.IRQ: self.irq_layout})
        wiring.connect(m, wiring.flipped(self.req), encoder.record)
        wiring.connect(m, encoder.message, wiring.flipped(self.to_link))
        wiring.connect(m, wiring.flipped(self.from_link), decoder.message)
        wiring.connect(m, decoder.resp, wiring.flipped(self.resp))
        wiring.connect(m, decoder.irq, wiring.flipped(self.irq))
        m.d.comb += self.malformed.eq(decoder.malformed)
        return m


class IoTunnelDevice(wiring.Component):
    """The offload device's half of the TC_IO tunnel: requests in, responses and
    interrupts out, merged per message.

    Parameters: as ``IoTunnelHost`` (``IoTunnelDevice.for_system(config)``).

    Members
    -------
    from_link : In(stream of ChunkBeat)
        REQ messages (from the offload ``LinkPort.io_out``).
    req : Out(stream of request_layout)
        Requests to the offload ``VFUnit.req``, in message order.
    resp : In(stream of response_layout)
        The unit's responses.
    irq : In(stream of irq_layout)
        The unit's MSI-X messages.
    to_link : Out(stream of ChunkBeat)
        RESP and IRQ messages (to the offload ``LinkPort.io_in``), never interleaved; when
        both wait, they alternate (round robin per message).
    malformed : Out(32)
        Messages from the link dropped as malformed (a RESP or IRQ is malformed here).

    Latency: last beat on ``from_link`` to ``req`` valid 1 cycle; ``resp``/``irq`` to the
    first beat on ``to_link`` 1 cycle, 3 beats per message. Throughput one beat per cycle,
    plus one idle cycle when the merge switches between responses and interrupts.
    Backpressure: a unit that does not take ``req`` (a quiesced slot) stalls ``from_link``
    at the last beat of the next request;
    ``to_link`` backpressure holds ``resp.ready``/``irq.ready`` low once a message of that
    kind waits.
    """

    def __init__(self, request_layout: data.Layout, response_layout: data.Layout,
                 irq_layout: data.Layout):
        self.request_layout = _check_layout("IoTunnelDevice", "request_layout",
                                            request_layout, IoKind.REQ)
        self.response_layout = _check_layout("IoTunnelDevice", "response_layout",
                                             response_layout, IoKind.RESP)
        self.irq_layout = _check_layout("IoTunnelDevice", "irq_layout", irq_layout,
                                        IoKind.IRQ)
        super().__init__({
            "from_link": In(stream.Signature(ChunkBeat)),
            "req": Out(stream.Signature(request_layout)),
            "resp": In(stream.Signature(response_layout)),
            "irq": In(stream.Signature(irq_layout)),
            "to_link": Out(stream.Signature(ChunkBeat)),
            "malformed": Out(32),
        })

    @classmethod
    def for_system(cls, config) -> "IoTunnelDevice":
        lay = offload_layouts(config)
        return cls(lay[IoKind.REQ], lay[IoKind.RESP], lay[IoKind.IRQ])

    def elaborate(self, platform):
        m = Module()
        m.submodules.decoder = decoder = IoDecoder({IoKind.REQ: self.request_layout})
        m.submodules.resp_encoder = resp_encoder = IoEncoder(IoKind.RESP, self.response_layout)
        m.submodules.irq_encoder = irq_encoder = IoEncoder(IoKind.IRQ, self.irq_layout)
        m.submodules.merge = merge = PacketArbiter(2)
        wiring.connect(m, wiring.flipped(self.from_link), decoder.message)
        wiring.connect(m, decoder.req, wiring.flipped(self.req))
        wiring.connect(m, wiring.flipped(self.resp), resp_encoder.record)
        wiring.connect(m, wiring.flipped(self.irq), irq_encoder.record)
        wiring.connect(m, resp_encoder.message, merge.inputs[0])
        wiring.connect(m, irq_encoder.message, merge.inputs[1])
        wiring.connect(m, merge.output, wiring.flipped(self.to_link))
        m.d.comb += self.malformed.eq(decoder.malformed)
        return m
