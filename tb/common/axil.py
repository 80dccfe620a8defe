"""AXI4-Lite master agent for cocotb and pyuvm, on cocotbext-axi's channel drivers.

``AxilMaster`` drives the five channels of an Amaranth ``axil_signature`` port (flattened to
``<name>__awvalid`` ...) with cocotbext-axi's ``AxiLite*Source``/``AxiLite*Sink``, so every
beat is exactly what the caller asks for (any address, any strobe, unlike
``AxiLiteMaster``'s byte API, which splits a misaligned word in two and cannot send a
non-contiguous strobe).  AW and W are queued on their own channels with independent random
idle cycles, so they reach the slave in either order or together; B and R get random
``ready`` stalls.  All randomness comes from one seeded ``random.Random``.

``write``/``read`` may be called from several coroutines at once: responses come back in
order per direction (AXI4-Lite has no IDs) and are matched to their requests in order.

The pyuvm side: ``AxilItem`` (one access, response filled in by the driver),
``AxilDriver`` (hands items to the ``AxilMaster`` found in ConfigDB as ``"AXIL_MASTER"``),
``AxilMonitor`` (publishes every completed access on ``ap``) and ``AxilAgent``.
"""

from __future__ import annotations

import itertools
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

import cocotb
from cocotb.triggers import Event
from cocotbext.axi import AxiLiteBus
from cocotbext.axi.axil_channels import (
    AxiLiteARSource,
    AxiLiteAWSource,
    AxiLiteBSink,
    AxiLiteRSink,
    AxiLiteWSource,
)
from pyuvm import (
    ConfigDB,
    uvm_analysis_port,
    uvm_component,
    uvm_driver,
    uvm_sequence_item,
)

from tb.common.uvm import SequencedAgent

__all__ = ["AxilResp", "AxilAccess", "AxilMaster", "AxilCsrBus", "AxilItem", "AxilDriver",
           "AxilMonitor", "AxilAgent", "CONFIG_KEY"]

CONFIG_KEY = "AXIL_MASTER"
FULL_STROBE = 0b1111


class AxilResp(IntEnum):
    OKAY = 0b00
    EXOKAY = 0b01   # never legal on AXI4-Lite; listed so that a bad response decodes
    SLVERR = 0b10
    DECERR = 0b11


@dataclass
class AxilAccess:
    """One completed access, as the monitor publishes it."""
    write: bool
    addr: int
    data: int          # written data, or read data
    strb: int
    resp: AxilResp


def _pauses(rng: random.Random, probability: float):
    """Per-cycle pause flags for a cocotbext-axi pause generator."""
    if probability <= 0:
        return itertools.repeat(False)
    return (rng.random() < probability for _ in itertools.count())


class AxilMaster:
    """AXI4-Lite master on the flattened port ``<prefix>__*`` of ``dut``.

    ``valid_idle``: probability that AW, W and AR each hold ``valid`` low in a cycle;
    ``ready_stall``: probability that B and R hold ``ready`` low in a cycle.  ``callback``
    (an ``AxilAccess``) is called as each access completes."""

    def __init__(self, dut, prefix: str, clock, reset=None, *, rng: random.Random | None = None,
                 valid_idle: float = 0.0, ready_stall: float = 0.0,
                 callback: Callable[[AxilAccess], None] | None = None):
        for p in (valid_idle, ready_stall):
            if not 0.0 <= p < 1.0:
                raise ValueError(f"idle/stall probability must be in [0, 1), not {p}")
        # Amaranth joins port and member with "__"; cocotb-bus adds one "_" itself.
        bus = AxiLiteBus.from_prefix(dut, f"{prefix}_")
        self.aw = AxiLiteAWSource(bus.write.aw, clock, reset)
        self.w = AxiLiteWSource(bus.write.w, clock, reset)
        self.b = AxiLiteBSink(bus.write.b, clock, reset)
        self.ar = AxiLiteARSource(bus.read.ar, clock, reset)
        self.r = AxiLiteRSink(bus.read.r, clock, reset)
        self.addr_bits = len(bus.write.aw.awaddr)
        self.rng = rng or random.Random(0)
        self.callback = callback
        self.set_timing(valid_idle, ready_stall)
        self._writes: deque = deque()
        self._reads: deque = deque()
        self.counts = {"read": 0, "write": 0}
        cocotb.start_soon(self._collect(self.b, self._writes))
        cocotb.start_soon(self._collect(self.r, self._reads))

    def set_timing(self, valid_idle: float, ready_stall: float) -> None:
        """Change the random idle/stall probabilities (0 turns them off)."""
        for channel, p in ((self.aw, valid_idle), (self.w, valid_idle), (self.ar, valid_idle),
                           (self.b, ready_stall), (self.r, ready_stall)):
            channel.set_pause_generator(_pauses(self.rng, p) if p else None)
            channel.pause = False

    async def write(self, addr: int, data: int, strb: int = FULL_STROBE, prot: int = 0
                    ) -> AxilResp:
        """One write beat exactly as given; returns BRESP."""
        self._check_addr(addr)
        done = Event()
        entry = [done, AxilAccess(True, addr, data & 0xFFFF_FFFF, strb, AxilResp.OKAY)]
        self._writes.append(entry)
        self.aw.send_nowait(self.aw._transaction_obj(awaddr=addr, awprot=prot))
        self.w.send_nowait(self.w._transaction_obj(wdata=data & 0xFFFF_FFFF, wstrb=strb))
        await done.wait()
        return entry[1].resp

    async def read(self, addr: int, prot: int = 0) -> tuple[int, AxilResp]:
        """One read beat; returns (RDATA, RRESP)."""
        self._check_addr(addr)
        done = Event()
        entry = [done, AxilAccess(False, addr, 0, 0, AxilResp.OKAY)]
        self._reads.append(entry)
        self.ar.send_nowait(self.ar._transaction_obj(araddr=addr, arprot=prot))
        await done.wait()
        return entry[1].data, entry[1].resp

    async def wait_idle(self) -> None:
        """Until every access issued so far has its response."""
        while self._writes or self._reads:
            pending = (self._writes or self._reads)[-1][0]
            await pending.wait()

    def _check_addr(self, addr: int) -> None:
        if not 0 <= addr < 1 << self.addr_bits:
            raise ValueError(f"address {addr:#x} does not fit the {self.addr_bits}-bit AXI "
                             f"address")

    async def _collect(self, sink, pending: deque) -> None:
        while True:
            beat = await sink.recv()
            if not pending:
                raise AssertionError(f"{type(sink).__name__}: a response nobody asked for "
                                     f"({beat})")
            done, access = pending.popleft()
            access.resp = AxilResp(int(getattr(beat, "bresp", getattr(beat, "rresp", 0))))
            if not access.write:
                access.data = int(beat.rdata)
            self.counts["write" if access.write else "read"] += 1
            if self.callback:
                self.callback(access)
            done.set()


class AxilCsrBus:
    """``read(addr) -> int`` / ``write(addr, value)`` over an ``AxilMaster``, for code written
    against the plain register port (tb/system/vmm.py's ``CsrBus``): a response other than
    OKAY raises AssertionError naming the address, since the VMM only touches registers
    that exist."""

    def __init__(self, master: AxilMaster, clock):
        self.master, self.clock = master, clock
        self.accesses = 0

    async def write(self, addr: int, value: int) -> None:
        resp = await self.master.write(addr, value & 0xFFFF_FFFF)
        self.accesses += 1
        if resp != AxilResp.OKAY:
            raise AssertionError(f"AXI write of register {addr:#05x} got {resp.name}")

    async def read(self, addr: int) -> int:
        data, resp = await self.master.read(addr)
        self.accesses += 1
        if resp != AxilResp.OKAY:
            raise AssertionError(f"AXI read of register {addr:#05x} got {resp.name}")
        return data


# ---------------------------------------------------------------- pyuvm agent
class AxilItem(uvm_sequence_item):
    """One AXI4-Lite access; the driver fills ``data`` (reads) and ``resp``."""

    def __init__(self, name: str = "axil_item", write: bool = False, addr: int = 0,
                 data: int = 0, strb: int = FULL_STROBE):
        super().__init__(name)
        self.write, self.addr, self.data, self.strb = write, addr, data, strb
        self.resp: AxilResp | None = None

    def __str__(self) -> str:
        kind = "write" if self.write else "read"
        resp = self.resp.name if self.resp is not None else "pending"
        return f"{kind} {self.addr:#06x} data={self.data:#010x} strb={self.strb:04b} {resp}"


class AxilDriver(uvm_driver):
    """Runs each ``AxilItem`` on the ``AxilMaster`` from ConfigDB (``CONFIG_KEY``)."""

    def build_phase(self):
        self.master: AxilMaster = ConfigDB().get(self, "", CONFIG_KEY)

    async def run_phase(self):
        while True:
            item = await self.seq_item_port.get_next_item()
            if item.write:
                item.resp = await self.master.write(item.addr, item.data, item.strb)
            else:
                item.data, item.resp = await self.master.read(item.addr)
            self.seq_item_port.item_done()


class AxilMonitor(uvm_component):
    """Publishes every completed access (``AxilAccess``) of the master on ``ap``."""

    def build_phase(self):
        self.ap = uvm_analysis_port("ap", self)

    def connect_phase(self):
        master: AxilMaster = ConfigDB().get(self, "", CONFIG_KEY)
        previous = master.callback

        def publish(access: AxilAccess) -> None:
            if previous:
                previous(access)
            self.ap.write(access)
        master.callback = publish


class AxilAgent(SequencedAgent):
    """Sequencer + driver + monitor for one AXI4-Lite master port."""

    DRIVER = AxilDriver
    MONITOR = AxilMonitor
