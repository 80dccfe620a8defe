"""The link between the system top's two devices, closed by the testbench (docs/design.md, §7).

``hdl/system.py`` cuts the link open: each direction's wire is a port pair, ``h2o_tx`` ->
``h2o_rx`` (host to offload) and ``o2h_tx`` -> ``o2h_rx``. Every bench of the system top
closes both with ``SystemLink``, with no faults when none are wanted: without it no
migration message and no I/O of an offload VF gets across.

``SystemLink`` is the pair of ``tb.common.link_fault.WireLane``s (each a seeded
``FaultyChannel``) moved by the one wire driver of every bench, ``close_wires``: one
coroutine, two triggers a cycle for both directions.
Faults are ``model.link.FaultConfig``; the seed is logged and, with the same traffic,
reproduces every fault. ``link_faults`` builds the FaultConfig from the scenario knobs.
"""

from __future__ import annotations

import logging

import cocotb

from model.link import FaultConfig
from tb.common.link_fault import FaultyChannel, WireHandles, WireLane, close_wires, derive_seeds

__all__ = ["DIRECTIONS", "SystemLink", "link_faults", "parse_windows"]

DIRECTIONS = {"h2o": ("h2o_tx", "h2o_rx"), "o2h": ("o2h_tx", "o2h_rx")}


def parse_windows(text: str) -> tuple[tuple[int, int], ...]:
    """``"2000:100,9000:40"`` -> ((2000, 100), (9000, 40)): link-down windows (first cycle
    counted from the link's start, cycles); ValueError with the offending item."""
    windows = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        parts = item.split(":")
        try:
            start, length = (int(p) for p in parts)
        except ValueError:
            raise ValueError(f"link-down window {item!r} is not START:CYCLES") from None
        if start < 0 or length < 1:
            raise ValueError(f"link-down window {item!r}: START must be >= 0 and CYCLES >= 1")
        windows.append((start, length))
    return tuple(windows)


def link_faults(ber: float = 0.0, burst_rate: float = 0.0, drop_rate: float = 0.0,
                dup_rate: float = 0.0, delay_rate: float = 0.0,
                link_down: str = "") -> FaultConfig:
    """The faults of each wire, from the scenario knobs (``tb.system.env.Knobs``)."""
    return FaultConfig(ber=ber, burst_rate=burst_rate, drop_rate=drop_rate, dup_rate=dup_rate,
                       delay_rate=delay_rate, down=parse_windows(link_down))


class SystemLink:
    """Both wires of the system top, each through a seeded ``FaultyChannel``.

    ``start()`` before reset (the receivers then see an idle wire until the transmitters
    drive); ``link_down(cycles)`` takes both directions down from the next cycle on;
    ``counts()`` is what each channel saw and injected, by direction."""

    def __init__(self, dut, faults: FaultConfig | None = None, seed: int = 0,
                 log: logging.Logger | None = None):
        self.dut = dut
        self.log = log or logging.getLogger("cocotb.link")
        faults = faults or FaultConfig()
        self.seed = seed
        seeds = derive_seeds(seed, len(DIRECTIONS))
        self.lanes = {}
        for (name, (tx, rx)), s in zip(DIRECTIONS.items(), seeds, strict=True):
            src, dst = WireHandles.of(dut, tx), WireHandles.of(dut, rx)
            self.lanes[name] = WireLane(src, dst, FaultyChannel(len(src.flit), faults, s))
        self.channels = {name: lane.channel for name, lane in self.lanes.items()}
        self.log.info("link: %s on both wires, seed %d -> %s", faults, seed,
                      dict(zip(DIRECTIONS, seeds, strict=True)))
        self._task = None

    def start(self):
        if self._task is None:
            for lane in self.lanes.values():
                lane.idle()
            self._task = cocotb.start_soon(close_wires(self.dut.clk, list(self.lanes.values())))
        return self._task

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def link_down(self, cycles: int) -> None:
        for name, channel in self.channels.items():
            start, length = channel.link_down(cycles)
            self.log.info("link %s down for cycles [%d, %d)", name, start, start + length)

    def counts(self) -> dict[str, dict[str, int]]:
        return {name: channel.counts() for name, channel in self.channels.items()}

    def injected(self) -> dict[str, int]:
        """The faults injected on both wires, summed."""
        total: dict[str, int] = {}
        for counts in self.counts().values():
            for key, value in counts.items():
                if key not in ("forwarded", "cycles"):
                    total[key] = total.get(key, 0) + value
        return total
