"""Benches of hdl/io_tunnel.py: ``TunnelPair``, the DUT of the cocotb tests and of the
amaranth.sim round-trip tests: an ``IoTunnelHost`` and an ``IoTunnelDevice`` back to back,
each link direction through a small FIFO with a stall gate, so a test can throttle the
"link" in both directions and see every beat that crosses it. With ``link`` parameters the
FIFOs are replaced by a real link: two ``LinkPort``s (TC_IO) whose wires are top-level
ports, closed by the bench (tb/common/link_fault.py), as the system will use the tunnel.

``CONFIGS`` are the elaboration parameters the cocotb entry builds (record field
widths; one Verilog and one simulator build each); the cocotb tests read theirs back from
``VFMIG_BENCH_CONFIG``.
"""

from __future__ import annotations

from amaranth.hdl import Module
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out, flipped

from hdl.formats import ChunkBeat
from hdl.io_tunnel import IoTunnelDevice, IoTunnelHost, offload_layouts
from hdl.link import LinkPort, wire_signature
from model.config import SystemConfig
from model.io_message import IoKind
from model.link import LinkParams
from model.state import OP_BITS
from tb.common.runner import bench_config_env, read_bench_config

DIRECTIONS = ("down", "up")     # down: host -> offload device; up: offload device -> host
WIRES = {"down": ("host_tx", "dev_rx"), "up": ("dev_tx", "host_rx")}   # (source, sink)


def record_layouts(slot: int, tag: int, addr: int, vector: int) -> dict[IoKind, data.Layout]:
    """Record layouts with the given field widths, fields in hdl/formats.py's order."""
    return {
        IoKind.REQ: data.StructLayout({"slot": slot, "op": OP_BITS, "addr": addr, "data": 32,
                                       "tag": tag}),
        IoKind.RESP: data.StructLayout({"slot": slot, "tag": tag, "data": 32, "error": 1}),
        IoKind.IRQ: data.StructLayout({"slot": slot, "vector": vector, "addr": 32,
                                       "data": 32}),
    }


def _system_widths(config: SystemConfig) -> dict[str, int]:
    lay = offload_layouts(config)
    return {"slot": lay[IoKind.REQ]["slot"].width, "tag": lay[IoKind.REQ]["tag"].width,
            "addr": lay[IoKind.REQ]["addr"].width, "vector": lay[IoKind.IRQ]["vector"].width}


# The default system's offload records, every field at its maximum message width, and the
# default records over a default link.
CONFIGS = {
    "default": {"widths": _system_widths(SystemConfig()), "fifo_depth": 4},
    "max": {"widths": {"slot": 8, "tag": 32, "addr": 32, "vector": 12}, "fifo_depth": 3},
    "link": {"widths": _system_widths(SystemConfig()), "link": {}},
}


class TunnelPair(wiring.Component):
    """Host and device tunnel halves joined through a FIFO per direction.

    Members
    -------
    req : In(stream of request)          requests into the host half
    dev_req : Out(stream of request)     requests out of the device half (to "the unit")
    dev_resp : In(stream of response)    the unit's responses into the device half
    dev_irq : In(stream of irq)          the unit's interrupts into the device half
    resp : Out(stream of response)       responses out of the host half
    irq : Out(stream of irq)             interrupts out of the host half
    down_stall, up_stall : In(1)         while 1, nothing crosses that link direction
    down_beat, up_beat : Out(ChunkBeat)  the beat crossing (FIFO / LinkPort output side) ...
    down_fire, up_fire : Out(1)          ... in a cycle where this is 1
    host_malformed, dev_malformed : Out(32)
    host_tx, dev_tx : Out(wire), host_rx, dev_rx : In(wire)
        Only with ``link``: the LinkPorts' wires (close host_tx -> dev_rx, dev_tx -> host_rx).
    """

    def __init__(self, widths: dict[str, int], fifo_depth: int = 4, link: dict | None = None):
        self.widths, self.fifo_depth, self.link = dict(widths), fifo_depth, link
        self.layouts = lay = record_layouts(**widths)
        members = {
            "req": In(stream.Signature(lay[IoKind.REQ])),
            "dev_req": Out(stream.Signature(lay[IoKind.REQ])),
            "dev_resp": In(stream.Signature(lay[IoKind.RESP])),
            "dev_irq": In(stream.Signature(lay[IoKind.IRQ])),
            "resp": Out(stream.Signature(lay[IoKind.RESP])),
            "irq": Out(stream.Signature(lay[IoKind.IRQ])),
            "host_malformed": Out(32), "dev_malformed": Out(32),
        }
        for direction in DIRECTIONS:
            members[f"{direction}_stall"] = In(1)
            members[f"{direction}_beat"] = Out(ChunkBeat)
            members[f"{direction}_fire"] = Out(1)
        if link is not None:
            width = LinkParams(**link).link_width
            for side in ("host", "dev"):
                members[f"{side}_tx"] = Out(wire_signature(width))
                members[f"{side}_rx"] = In(wire_signature(width))
        super().__init__(members)
        args = (lay[IoKind.REQ], lay[IoKind.RESP], lay[IoKind.IRQ])
        # Attributes, so amaranth.sim tests can look inside.
        self.host, self.device = IoTunnelHost(*args), IoTunnelDevice(*args)

    def elaborate(self, platform):
        m = Module()
        host, device = self.host, self.device
        m.submodules.host, m.submodules.device = host, device
        wiring.connect(m, flipped(self.req), host.req)
        wiring.connect(m, host.resp, flipped(self.resp))
        wiring.connect(m, host.irq, flipped(self.irq))
        wiring.connect(m, device.req, flipped(self.dev_req))
        wiring.connect(m, flipped(self.dev_resp), device.resp)
        wiring.connect(m, flipped(self.dev_irq), device.irq)
        m.d.comb += [self.host_malformed.eq(host.malformed),
                     self.dev_malformed.eq(device.malformed)]
        ports = {}
        if self.link is not None:
            for side in ("host", "dev"):
                ports[side] = port = m.submodules[f"{side}_link"] = LinkPort(**self.link)
                wiring.connect(m, port.tx, flipped(getattr(self, f"{side}_tx")))
                wiring.connect(m, flipped(getattr(self, f"{side}_rx")), port.rx)
                m.d.comb += [port.mig_in.valid.eq(0), port.mig_out.ready.eq(1)]
        for direction, source, sink, src_side, dst_side in (
                ("down", host.to_link, device.from_link, "host", "dev"),
                ("up", device.to_link, host.from_link, "dev", "host")):
            stall = getattr(self, f"{direction}_stall")
            if self.link is None:
                fifo = SyncFIFOBuffered(width=ChunkBeat.as_shape().size, depth=self.fifo_depth)
                m.submodules[f"{direction}_fifo"] = fifo
                m.d.comb += [fifo.w_data.eq(source.payload), fifo.w_en.eq(source.valid),
                             source.ready.eq(fifo.w_rdy)]
                out_valid, out_payload, out_ready = fifo.r_rdy, fifo.r_data, fifo.r_en
            else:
                wiring.connect(m, source, ports[src_side].io_in)
                out = ports[dst_side].io_out
                out_valid, out_payload, out_ready = out.valid, out.payload, out.ready
            m.d.comb += [sink.payload.eq(out_payload),
                         sink.valid.eq(out_valid & ~stall),
                         out_ready.eq(sink.ready & ~stall),
                         getattr(self, f"{direction}_beat").eq(out_payload),
                         getattr(self, f"{direction}_fire").eq(sink.valid & sink.ready)]
        return m


def tunnel_pair(name: str = "default") -> TunnelPair:
    return TunnelPair(**CONFIGS[name])


def config_env(name: str) -> dict[str, str]:
    return bench_config_env({"name": name, **CONFIGS[name]})


def config_from_env() -> tuple[str, dict]:
    doc = read_bench_config("tb/io_tunnel/test_io_tunnel.py")
    return doc.pop("name"), doc
