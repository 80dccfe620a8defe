"""Benches of hdl/link.py: ``LinkPair``, the DUT of the cocotb tests and of the amaranth.sim
tests: two ``LinkPort``s (device A and device B) whose four wire ends are top-level ports, so
the bench closes the link through its fault injector (A.tx -> faults -> B.rx and back).

``CONFIGS`` are the elaboration parameters the cocotb entry builds (one Verilog and one
simulator build each); the cocotb tests read theirs back from ``VFMIG_BENCH_CONFIG``.
"""

from __future__ import annotations

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out, flipped

from hdl.formats import ChunkBeat
from hdl.link import LinkPort, LinkStats, wire_signature
from model.link import LinkParams
from tb.common.runner import bench_config_env, read_bench_config

PORTS = ("a", "b")


class LinkPair(wiring.Component):
    """Two link ports with their wires cut open.

    Members (``<p>`` is ``a`` or ``b``)
    -------
    <p>_io_in, <p>_mig_in : In(stream of ChunkBeat)   messages port <p> sends
    <p>_io_out, <p>_mig_out : Out(stream of ChunkBeat)   messages port <p> received
    <p>_tx : Out(wire)   what port <p> transmits
    <p>_rx : In(wire)    what port <p> receives (drive it from the other port's tx)
    <p>_stats : Out(LinkStats)
    """

    def __init__(self, **params):
        self.params = LinkParams(**params)
        self._kwargs = params
        width = self.params.link_width
        members = {}
        for port in PORTS:
            members.update({
                f"{port}_io_in": In(stream.Signature(ChunkBeat)),
                f"{port}_mig_in": In(stream.Signature(ChunkBeat)),
                f"{port}_io_out": Out(stream.Signature(ChunkBeat)),
                f"{port}_mig_out": Out(stream.Signature(ChunkBeat)),
                f"{port}_tx": Out(wire_signature(width)),
                f"{port}_rx": In(wire_signature(width)),
                f"{port}_stats": Out(LinkStats),
            })
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        for port in PORTS:
            link = LinkPort(**self._kwargs)
            m.submodules[f"port_{port}"] = link
            for name in ("io_in", "mig_in", "rx"):
                wiring.connect(m, flipped(getattr(self, f"{port}_{name}")), getattr(link, name))
            for name in ("io_out", "mig_out", "tx"):
                wiring.connect(m, getattr(link, name), flipped(getattr(self, f"{port}_{name}")))
            m.d.comb += getattr(self, f"{port}_stats").eq(link.stats)
        return m


# Default parameters as the system builds them; a 32-bit link with small slots, payloads
# and buffers, so replays, packet cutting and credit stalls happen often.
CONFIGS = {
    "default": {},
    "narrow": {"link_width": 32, "replay_slots": 4, "max_payload_words": 12,
               "rx_buffer_flits": 32, "mig_share": 2},
}


def config_env(name: str) -> dict[str, str]:
    return bench_config_env({"name": name, "params": CONFIGS[name]})


def config_from_env() -> tuple[str, LinkParams]:
    doc = read_bench_config("tb/link/test_link.py or python -m tb.bench.link")
    return doc["name"], LinkParams(**doc["params"])


def link_pair(name: str = "default") -> LinkPair:
    return LinkPair(**CONFIGS[name])
