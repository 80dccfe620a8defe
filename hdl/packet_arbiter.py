"""Packet-level round-robin arbiter: merges N packet streams without interleaving packets."""

from amaranth import Array, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from model.common import check_int

from .formats import ChunkBeat


class PacketArbiter(wiring.Component):
    """Merge ``n_inputs`` streams of :class:`ChunkBeat` packets into one.

    The grant is held from a packet's first beat to its ``last`` beat, so packets never
    interleave; after each packet, and whenever the granted input is idle between packets,
    the grant moves to the next requesting input (round robin), so no input starves.

    Members
    -------
    inputs[i] : In(stream of ChunkBeat)
    output : Out(stream of ChunkBeat)

    Beats pass combinationally (0 cycles); switching inputs costs one idle cycle.
    Backpressure on ``output`` stalls the granted input only.
    """

    def __init__(self, n_inputs: int):
        check_int("PacketArbiter", "n_inputs", n_inputs, 1)
        self.n_inputs = n_inputs
        super().__init__({
            "inputs": In(stream.Signature(ChunkBeat)).array(n_inputs),
            "output": Out(stream.Signature(ChunkBeat)),
        })

    def elaborate(self, platform):
        m = Module()
        n = self.n_inputs
        grant = Signal(range(n))
        locked = Signal()  # inside a packet of inputs[grant]
        valids = Array(port.valid for port in self.inputs)

        with m.Switch(grant):
            for i, port in enumerate(self.inputs):
                with m.Case(i):
                    m.d.comb += [
                        self.output.payload.eq(port.payload),
                        self.output.valid.eq(port.valid),
                        port.ready.eq(self.output.ready),
                    ]

        beat = self.output.valid & self.output.ready
        with m.If(beat):
            m.d.sync += locked.eq(~self.output.payload.last)
        if n > 1:
            packet_end = beat & self.output.payload.last
            with m.If(packet_end | (~locked & ~self.output.valid)):
                # Next requesting input after `grant`, in rotation order.
                for k in reversed(range(1, n)):
                    candidate = Signal(range(n), name=f"candidate_{k}")
                    m.d.comb += candidate.eq(
                        (grant + k) - ((grant + k) >= n) * n)
                    with m.If(valids[candidate]):
                        m.d.sync += grant.eq(candidate)
        return m
