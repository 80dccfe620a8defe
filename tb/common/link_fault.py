"""The link-fault agent: a seeded faulty wire between two wire ports of a DUT (docs/design.md).

A link's wire is a port pair (hdl/link.py ``wire_signature``): the transmitting side drives
``<tx>__valid``, ``<tx>__sop``, ``<tx>__flit``, the receiving side takes ``<rx>__valid``,
``<rx>__sop``, ``<rx>__flit``, and nothing can be stalled. A system top with the link cut
open (two ``LinkPort``s whose wires are top-level ports) is closed by two agents, one per
direction::

    agents = LinkFaultAgent.both_directions(
        dut, ("host_tx", "offload_rx"), ("offload_tx", "host_rx"),
        faults=FaultConfig(ber=1e-5, drop_rate=1e-3), seed=1234)
    for agent in agents:
        agent.start()
    ...
    agents[0].link_down(200)            # the host -> offload wire is down for 200 cycles
    log(agents[0].counts())             # what it injected

Faults are ``model.link.FaultConfig`` (the same seeded model the link's own benches use,
``model.link.FaultyWire``): independent bit flips at a bit error rate over the flit and its
``sop`` bit, bursts of ``burst_bits`` flipped bits, dropped flits, duplicated flits, random
stalls (``delay_rate``: the wire holds every later flit back), and link-down windows
``(first cycle, cycles)`` counted from ``start()``. Everything is decided by one
``random.Random(seed)``; the seed is logged, and the same seed and the same traffic give the
same faults.

Timing: a flit the transmitter drives in cycle ``t`` (sampled in ReadOnly) is driven on the
receiver's wire after the edge that ends cycle ``t``, i.e. it is seen by the receiver in
cycle ``t + 1 + latency`` (``latency`` extra cycles of wire, default 0) unless a fault
drops, delays or duplicates it. Icarus' undriven/X values on the transmitter read as idle.

``FaultyChannel`` is the pure-Python part (no simulator needed): the fault engine plus the
fixed latency; ``LinkFaultAgent`` adds the cocotb coroutine that moves flits each cycle.
"""

from __future__ import annotations

import logging
import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace

import cocotb
from cocotb.triggers import ReadOnly, RisingEdge

from model.common import check_int
from model.link import FaultConfig, FaultyWire, Flit
from tb.common.seeds import derive_seeds  # re-exported: the one seed recipe lives there

__all__ = ["FaultConfig", "FaultyChannel", "LinkFaultAgent", "WireHandles", "WireLane",
           "close_wires", "derive_seeds"]


class FaultyChannel:
    """One direction of the wire: the seeded fault model plus a fixed latency.

    ``step(flit)`` is called once per cycle with what the transmitter drives (``None`` when
    idle) and returns what the receiver sees that cycle. Cycles are counted by the channel
    (the first ``step`` is cycle 0); ``FaultConfig.down`` windows refer to them.
    """

    def __init__(self, link_width: int, faults: FaultConfig | None = None, seed: int = 0,
                 latency: int = 0):
        check_int("FaultyChannel", "link_width", link_width, 1)
        check_int("FaultyChannel", "latency", latency, 0)
        self.link_width, self.latency = link_width, latency
        self.cycle = 0
        self.forwarded = 0
        self._pipe: deque[Flit | None] = deque([None] * latency)
        self.configure(faults or FaultConfig(), seed)

    def configure(self, faults: FaultConfig, seed: int | None = None) -> None:
        """New faults from now on; a new ``seed`` restarts the fault RNG (the counters and
        flits already inside the channel are kept)."""
        if not isinstance(faults, FaultConfig):
            raise TypeError(f"faults must be a model.link.FaultConfig, not {faults!r}")
        if seed is not None:
            self.seed = seed
            old = getattr(self, "wire", None)
            self.wire = FaultyWire(self.link_width, faults, random.Random(seed))
            if old is not None:     # keep what was counted and what is still queued
                self.wire.counts, self.wire.queue, self.wire.stall = (
                    old.counts, old.queue, old.stall)
        else:
            self.wire.faults = faults

    @property
    def faults(self) -> FaultConfig:
        return self.wire.faults

    def link_down(self, cycles: int, start: int | None = None) -> tuple[int, int]:
        """Add a link-down window of ``cycles`` cycles starting at ``start`` (default: the
        next cycle); returns the window."""
        if cycles < 1:
            raise ValueError(f"link_down cycles must be >= 1, not {cycles}")
        window = (self.cycle if start is None else start, cycles)
        self.wire.faults = replace(self.faults, down=(*self.faults.down, window))
        return window

    def step(self, flit: Flit | None) -> Flit | None:
        out = self.wire.step(self.cycle, flit)
        self.cycle += 1
        if self.latency:
            self._pipe.append(out)
            out = self._pipe.popleft()
        if out is not None:
            self.forwarded += 1
        return out

    def counts(self) -> dict[str, int]:
        """What the channel saw and injected: flits (valid flits offered), bit_flips,
        flipped_flits, bursts, dropped, duplicated, delays, down_lost, plus forwarded
        (flits handed to the receiver) and cycles."""
        return {**self.wire.counts.as_dict(), "forwarded": self.forwarded, "cycles": self.cycle}


@dataclass(frozen=True)
class WireHandles:
    """The three signals of one wire end (``<name>__valid``, ``__sop``, ``__flit``)."""

    valid: object
    sop: object
    flit: object

    @classmethod
    def of(cls, dut, name: str) -> WireHandles:
        try:
            return cls(*(getattr(dut, f"{name}__{sig}") for sig in ("valid", "sop", "flit")))
        except AttributeError as exc:
            raise AttributeError(f"the DUT has no wire port {name!r} (expected {name}__valid, "
                                 f"{name}__sop and {name}__flit: a wire_signature port)") from exc


def _read(handle) -> int:
    """An int, with X/Z (Icarus before reset) read as 0."""
    try:
        return int(handle.value)
    except ValueError:
        return 0


class WireLane:
    """One direction of a cut-open link: what ``source`` drives reaches ``sink`` through
    ``channel``. The one wire driver of every bench: ``sample()`` in the read-only phase of
    a cycle, ``drive(flit)`` after the clock edge (``close_wires`` does both, a bench that
    moves other signals in the same loop calls them itself)."""

    def __init__(self, source: WireHandles, sink: WireHandles, channel: FaultyChannel):
        self.source, self.sink, self.channel = source, sink, channel
        self.tap = None       # callable(flit) -> flit: sees (and may edit) what is sent
        self._driving = False

    def sample(self) -> Flit | None:
        src = self.source
        return Flit(_read(src.sop), _read(src.flit)) if _read(src.valid) else None

    def drive(self, flit: Flit | None) -> Flit | None:
        """Step the channel one cycle with what the source drove; drive what comes out."""
        if self.tap is not None:
            flit = self.tap(flit)
        out, dst = self.channel.step(flit), self.sink
        if out is not None:
            dst.valid.value = 1
            dst.sop.value = out.sop
            dst.flit.value = out.data
            self._driving = True
        elif self._driving:
            dst.valid.value = 0
            self._driving = False
        return out

    def idle(self) -> None:
        self.sink.valid.value = 0
        self.sink.sop.value = 0
        self.sink.flit.value = 0
        self._driving = False


async def close_wires(clk, lanes: Sequence[WireLane]) -> None:
    """Move every lane one cycle per clock, forever: one coroutine and two triggers a cycle
    for all lanes (the per-cycle Python work dominates a bench's run time)."""
    edge, settle = RisingEdge(clk), ReadOnly()
    while True:
        await settle
        flits = [lane.sample() for lane in lanes]
        await edge
        for lane, flit in zip(lanes, flits, strict=True):
            lane.drive(flit)


class LinkFaultAgent:
    """Moves flits every cycle from a transmitter's wire to a receiver's wire through a
    ``FaultyChannel``. ``start()`` launches its coroutine, ``stop()`` ends it (the receiver
    then sees an idle wire). The channel's counters are ``counts()``; ``link_down``,
    ``configure`` change the faults while running.

    Parameters
    ----------
    clk : the clock handle.
    source, sink : WireHandles (or a wire port name, looked up on ``dut``).
    faults : FaultConfig (default: none).
    seed : int, logged.
    latency : extra cycles on the wire (default 0: the receiver sees cycle ``t``'s flit in
        ``t + 1``).
    name : for the log (default ``"<source>-><sink>"`` when names are given).
    link_width : flit bits (default: the width of ``source.flit``).
    """

    def __init__(self, clk, source: WireHandles | str, sink: WireHandles | str,
                 faults: FaultConfig | None = None, seed: int = 0, latency: int = 0,
                 name: str | None = None, link_width: int | None = None, dut=None,
                 log: logging.Logger | None = None):
        if isinstance(source, str) or isinstance(sink, str):
            if dut is None:
                raise TypeError("LinkFaultAgent needs dut= to look up wire port names")
            name = name or f"{source}->{sink}"
            source = WireHandles.of(dut, source) if isinstance(source, str) else source
            sink = WireHandles.of(dut, sink) if isinstance(sink, str) else sink
        self.clk, self.source, self.sink = clk, source, sink
        self.name = name or "wire"
        self.log = log or logging.getLogger(f"cocotb.link_fault.{self.name}")
        width = link_width if link_width is not None else len(source.flit)
        self.channel = FaultyChannel(width, faults, seed, latency)
        self.lane = WireLane(source, sink, self.channel)
        self._task = None
        self.log.info("link-fault agent %s: %s, seed %d, latency %d", self.name,
                      self.channel.faults, seed, latency)

    @classmethod
    def both_directions(cls, dut, a_to_b: tuple[str, str], b_to_a: tuple[str, str],
                        faults: FaultConfig | None = None, seed: int = 0,
                        faults_b_to_a: FaultConfig | None = None, latency: int = 0,
                        clk=None) -> tuple[LinkFaultAgent, LinkFaultAgent]:
        """Two agents closing a link cut open at ``(tx port, rx port)`` pairs, seeded from
        ``seed`` (``derive_seeds``); ``faults_b_to_a`` defaults to ``faults``."""
        clk = clk if clk is not None else dut.clk
        seeds = derive_seeds(seed, 2)
        logging.getLogger("cocotb.link_fault").info(
            "link faults seed %d -> %s %d, %s %d", seed, a_to_b, seeds[0], b_to_a, seeds[1])
        return (cls(clk, a_to_b[0], a_to_b[1], faults, seeds[0], latency, dut=dut),
                cls(clk, b_to_a[0], b_to_a[1], faults if faults_b_to_a is None
                    else faults_b_to_a, seeds[1], latency, dut=dut))

    # ---- control
    def start(self):
        if self._task is None:
            self.lane.idle()
            self._task = cocotb.start_soon(close_wires(self.clk, [self.lane]))
        return self._task

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self.lane.idle()

    def configure(self, faults: FaultConfig, seed: int | None = None) -> None:
        self.channel.configure(faults, seed)
        self.log.info("link-fault agent %s: now %s%s", self.name, faults,
                      "" if seed is None else f", seed {seed}")

    def link_down(self, cycles: int, start: int | None = None) -> tuple[int, int]:
        window = self.channel.link_down(cycles, start)
        self.log.info("link-fault agent %s: link down for cycles [%d, %d)", self.name,
                      window[0], window[0] + cycles)
        return window

    @property
    def cycle(self) -> int:
        return self.channel.cycle

    def counts(self) -> dict[str, int]:
        return self.channel.counts()
