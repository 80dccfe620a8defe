"""amaranth.sim helper: close the link wires of an ``hdl.system.System`` (no faults).

The system top leaves its link cut open (``h2o_tx`` -> ``h2o_rx``, ``o2h_tx`` -> ``o2h_rx``)
for the testbench to close; ``close_link(sim, dut)`` adds a process that copies each
transmitter's wire to its receiver every cycle, as ``tb/system/link.py`` does in cocotb
(what the transmitter drives in cycle ``t`` reaches the receiver in ``t + 1``).
"""

from __future__ import annotations

WIRES = (("h2o_tx", "h2o_rx"), ("o2h_tx", "o2h_rx"))


def close_link(sim, dut) -> None:
    pairs = [(getattr(dut, tx), getattr(dut, rx)) for tx, rx in WIRES]
    sources = [sig for tx, _ in pairs for sig in (tx.valid, tx.sop, tx.flit)]

    async def wires(ctx):
        async for _, _, *values in ctx.tick().sample(*sources):
            for i, (_, rx) in enumerate(pairs):
                valid, sop, flit = values[3 * i:3 * i + 3]
                ctx.set(rx.valid, valid)
                ctx.set(rx.sop, sop)
                ctx.set(rx.flit, flit)

    sim.add_process(wires)
