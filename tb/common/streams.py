"""cocotb drivers and monitors for Amaranth ``lib.stream`` ports (valid/ready/payload).

Amaranth flattens a stream port ``x`` to ``x__valid``, ``x__ready`` and a packed
``x__payload``; ``pack``/``unpack`` convert between field dicts and that vector using the
same ``amaranth.lib.data`` layout the HDL was built with (hdl/formats.py).
"""

from __future__ import annotations

import random
from collections import deque

import cocotb
from amaranth.lib import data
from cocotb.triggers import ReadOnly, RisingEdge


def _fields(layout: data.Layout):
    for name, fld in layout:
        yield name, fld.offset, fld.width


def pack(layout: data.Layout, value: dict | int) -> int:
    if isinstance(value, int):
        return value
    word = 0
    names = {name for name, _, _ in _fields(layout)}
    unknown = set(value) - names
    if unknown:
        raise KeyError(f"fields {sorted(unknown)} are not in layout {sorted(names)}")
    for name, offset, width in _fields(layout):
        word |= (int(value.get(name, 0)) & ((1 << width) - 1)) << offset
    return word


def unpack(layout: data.Layout, word: int) -> dict[str, int]:
    return {name: (word >> offset) & ((1 << width) - 1) for name, offset, width in _fields(layout)}


class StreamDriver:
    """Drives ``<name>__valid/__payload`` and honours ``__ready``.

    ``idle_prob`` inserts random idle cycles between beats (from an explicit ``rng``)."""

    def __init__(self, dut, name: str, clock, layout: data.Layout | None = None,
                 idle_prob: float = 0.0, rng: random.Random | None = None):
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.clock, self.layout = clock, layout
        self.idle_prob, self.rng = idle_prob, rng or random.Random(0)
        self.valid.value = 0

    async def send(self, value: dict | int) -> None:
        """Present one beat and return after the cycle it was accepted."""
        while self.idle_prob and self.rng.random() < self.idle_prob:
            await RisingEdge(self.clock)
        self.payload.value = pack(self.layout, value) if self.layout else int(value)
        self.valid.value = 1
        while True:
            await ReadOnly()
            accepted = bool(self.ready.value)
            await RisingEdge(self.clock)
            if accepted:
                break
        self.valid.value = 0


class StreamMonitor:
    """Collects every accepted beat of ``<name>``; drives ``__ready`` when ``drive_ready``.

    ``backpressure_prob`` drops ready on random cycles to exercise the DUT's stalls."""

    def __init__(self, dut, name: str, clock, layout: data.Layout | None = None,
                 drive_ready: bool = True, backpressure_prob: float = 0.0,
                 rng: random.Random | None = None, callback=None):
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.clock, self.layout, self.callback = clock, layout, callback
        self.drive_ready, self.backpressure_prob = drive_ready, backpressure_prob
        self.rng = rng or random.Random(0)
        self.beats: deque = deque()
        self.count = 0
        if drive_ready:
            self.ready.value = 1
        self._task = cocotb.start_soon(self._run())

    async def _run(self) -> None:
        while True:
            await RisingEdge(self.clock)
            if self.drive_ready and self.backpressure_prob:
                self.ready.value = 0 if self.rng.random() < self.backpressure_prob else 1
            await ReadOnly()
            if self.valid.value and self.ready.value:
                word = int(self.payload.value)
                beat = unpack(self.layout, word) if self.layout else word
                self.count += 1
                if self.callback:
                    self.callback(beat)
                else:
                    self.beats.append(beat)

    def stop(self) -> None:
        self._task.cancel()
