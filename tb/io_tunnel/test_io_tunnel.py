"""cocotb tests of hdl/io_tunnel.py on the generated Verilog of ``tb.io_tunnel.TunnelPair``
(host half + device half back to back, each link direction through a FIFO with a stall gate).

Run through tb/io_tunnel/test_io_tunnel.py, which builds the configuration named in
``VFMIG_BENCH_CONFIG``. Every test derives its seed from ``COCOTB_RANDOM_SEED`` and its own
name and logs it; a failure is reproduced with the same ``VFMIG_SEED``.

The TB: stream drivers on the three record inputs (requests into the host half, responses
and interrupts into the device half) with idle cycles, monitors with backpressure on the
three record outputs, and a link agent that stalls both link directions at random and
watches every beat crossing. In the ``link`` configuration the halves talk through two real
``LinkPort``s, whose wires are closed by two ``tb.common.link_fault.LinkFaultAgent``s (with
bit errors, bursts, drops, duplicates and delays in the tests that also stall).

The scoreboard checks, against the records the test sent and the Python reference
(``model.io_message``): every record delivered once, in order, intact; every message on the
link is the reference encoding of the next record of its kind; no malformed message.
"""

from __future__ import annotations

import os
import random
from collections import deque

import cocotb
import pytest
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

from model.io_message import IoKind, MalformedIoMessage, decode, encode
from model.link import FaultConfig
from tb.common.link_fault import LinkFaultAgent
from tb.common.runner import run_tests, simulator_available
from tb.common.seeds import bench_seed
from tb.common.streams import StreamDriver, StreamMonitor
from tb.io_tunnel import (
    CONFIGS,
    DIRECTIONS,
    WIRES,
    config_env,
    config_from_env,
    record_layouts,
    tunnel_pair,
)

CLOCK_NS = 10
# Wire faults of the link configuration in the tests that also stall the link.
LINK_FAULTS = FaultConfig(ber=1e-5, burst_rate=1e-3, drop_rate=2e-3, dup_rate=2e-3,
                          delay_rate=5e-3)
INPUTS = {IoKind.REQ: "req", IoKind.RESP: "dev_resp", IoKind.IRQ: "dev_irq"}
OUTPUTS = {IoKind.REQ: "dev_req", IoKind.RESP: "resp", IoKind.IRQ: "irq"}
LINK_KINDS = {"down": (IoKind.REQ,), "up": (IoKind.RESP, IoKind.IRQ)}


class Scoreboard:
    """Expected records per kind, consumed in order by the output monitors and, separately,
    by the link agent (which checks the encoding)."""

    def __init__(self, log):
        self.log = log
        self.records: dict[IoKind, deque] = {kind: deque() for kind in IoKind}
        self.on_link: dict[IoKind, deque] = {kind: deque() for kind in IoKind}
        self.errors: list[str] = []
        self.delivered = dict.fromkeys(IoKind, 0)
        self.messages = dict.fromkeys(IoKind, 0)

    def sent(self, kind: IoKind, record: dict) -> None:
        self.records[kind].append(record)
        self.on_link[kind].append(record)

    def received(self, kind: IoKind, record: dict) -> None:
        n = self.delivered[kind]
        self.delivered[kind] += 1
        if not self.records[kind]:
            self.errors.append(f"{kind.name} #{n}: {record} delivered, nothing outstanding")
        elif record != (want := self.records[kind].popleft()):
            self.errors.append(f"{kind.name} #{n}: delivered {record}, expected {want}")

    def crossed(self, direction: str, words: list[int]) -> None:
        try:
            kind = decode(words, LINK_KINDS[direction]).kind
        except MalformedIoMessage as exc:
            self.errors.append(f"{direction}: malformed message on the link ({exc}): {words}")
            return
        n = self.messages[kind]
        self.messages[kind] += 1
        if not self.on_link[kind]:
            self.errors.append(f"{direction}: {kind.name} message #{n} with nothing outstanding")
        elif words != (want := encode(kind, self.on_link[kind].popleft())):
            self.errors.append(f"{direction}: {kind.name} message #{n} is {words}, the "
                               f"reference encoding is {want}")

    def outstanding(self) -> int:
        return sum(map(len, self.records.values())) + sum(map(len, self.on_link.values()))


class TB:
    def __init__(self, dut, name: str, idle: float, backpressure: float, stall: float):
        self.dut = dut
        cfg_name, cfg = config_from_env()
        self.layouts = record_layouts(**cfg["widths"])
        # cocotb derives each test's RANDOM_SEED from COCOTB_RANDOM_SEED and the test name.
        self.seed = cocotb.RANDOM_SEED & 0xFFFF_FFFF
        self.rng = random.Random(self.seed)
        env_seed = os.environ.get("COCOTB_RANDOM_SEED", "?")
        channel = (f"link {cfg['link']}" if "link" in cfg
                   else f"fifo_depth {cfg['fifo_depth']}")
        dut._log.info("%s on config %s (%s, widths %s): seed %d (from "
                      "COCOTB_RANDOM_SEED=%s and the test name; rerun: VFMIG_SEED=%s "
                      "pytest tb/io_tunnel/test_io_tunnel.py -k %s); idle %.2f, backpressure "
                      "%.2f, link stall %.2f", name, cfg_name, channel, cfg["widths"],
                      self.seed, env_seed, env_seed, cfg_name, idle, backpressure, stall)
        self.board = Scoreboard(dut._log)
        self.stall = stall
        clk = dut.clk
        self.drivers = {kind: StreamDriver(dut, name_, clk, self.layouts[kind], idle,
                                           random.Random(self.rng.getrandbits(32)))
                        for kind, name_ in INPUTS.items()}
        self.monitors = {
            kind: StreamMonitor(dut, name_, clk, self.layouts[kind],
                                backpressure_prob=backpressure,
                                rng=random.Random(self.rng.getrandbits(32)),
                                callback=lambda rec, kind=kind: self.board.received(kind, rec))
            for kind, name_ in OUTPUTS.items()}
        self.fire_cycles = {d: [] for d in DIRECTIONS}
        self.cycle = 0
        for d in DIRECTIONS:
            getattr(dut, f"{d}_stall").value = 0
        self.through_link = "link" in cfg
        self.agents = ()
        if self.through_link:
            faults = LINK_FAULTS if stall else FaultConfig()
            self.agents = LinkFaultAgent.both_directions(dut, WIRES["down"], WIRES["up"],
                                                         faults, self.rng.getrandbits(32))

    async def reset(self) -> None:
        cocotb.start_soon(Clock(self.dut.clk, CLOCK_NS, unit="ns").start())
        for agent in self.agents:
            agent.start()
        self.dut.rst.value = 1
        for _ in range(3):
            await RisingEdge(self.dut.clk)
        self.dut.rst.value = 0
        cocotb.start_soon(self._link_agent())

    async def _link_agent(self) -> None:
        """Stalls each link direction at random; assembles the crossing beats into
        messages for the scoreboard."""
        dut, rng = self.dut, random.Random(self.rng.getrandbits(32))
        stalls = {d: getattr(dut, f"{d}_stall") for d in DIRECTIONS}
        fires = {d: getattr(dut, f"{d}_fire") for d in DIRECTIONS}
        beats = {d: getattr(dut, f"{d}_beat") for d in DIRECTIONS}
        partial: dict[str, list[int]] = {d: [] for d in DIRECTIONS}
        while True:
            await RisingEdge(dut.clk)
            self.cycle += 1
            if self.stall:
                for d in DIRECTIONS:
                    stalls[d].value = int(rng.random() < self.stall)
            await ReadOnly()
            for d in DIRECTIONS:
                if int(fires[d].value):
                    beat = int(beats[d].value)
                    partial[d].append(beat & 0xFFFF_FFFF)
                    self.fire_cycles[d].append(self.cycle)
                    if beat >> 32 & 1:
                        self.board.crossed(d, partial[d])
                        partial[d] = []

    def random_record(self, kind: IoKind) -> dict:
        return {name: self.rng.getrandbits(f.width) for name, f in self.layouts[kind]}

    async def send(self, kind: IoKind, count: int) -> None:
        for _ in range(count):
            record = self.random_record(kind)
            self.board.sent(kind, record)
            await self.drivers[kind].send(record)

    async def drain(self, limit: int = 20_000) -> None:
        start = self.cycle
        while self.board.outstanding() and not self.board.errors:
            assert self.cycle - start < limit, (
                f"not delivered after {limit} cycles: {self.board.outstanding()} outstanding "
                f"(records {[len(q) for q in self.board.records.values()]}, on the link "
                f"{[len(q) for q in self.board.on_link.values()]})")
            await RisingEdge(self.dut.clk)
        for _ in range(10):
            await RisingEdge(self.dut.clk)

    def check(self) -> None:
        board = self.board
        assert not board.errors, "\n".join(board.errors[:5])
        assert board.outstanding() == 0
        malformed = (int(self.dut.host_malformed.value), int(self.dut.dev_malformed.value))
        assert malformed == (0, 0), f"malformed counters {malformed}"
        self.dut._log.info("delivered %s, link messages %s in %d cycles",
                           {k.name: v for k, v in board.delivered.items()},
                           {k.name: v for k, v in board.messages.items()}, self.cycle)
        for agent in self.agents:
            self.dut._log.info("wire %s: %s", agent.name, agent.counts())


@cocotb.test()
@cocotb.parametrize((("idle", "backpressure", "stall"),
                     [(0.0, 0.0, 0.0), (0.3, 0.5, 0.2), (0.0, 0.8, 0.0)]))
async def random_traffic(dut, idle: float, backpressure: float, stall: float):
    """Requests down, responses and interrupts up, all at once: every record arrives once,
    in order, intact, and every message on the link is the reference encoding."""
    tb = TB(dut, f"random_traffic_{idle}_{backpressure}_{stall}", idle, backpressure, stall)
    await tb.reset()
    scale = 4 if tb.through_link else 1    # the link costs Python work on every cycle
    counts = {IoKind.REQ: 400 // scale, IoKind.RESP: 300 // scale, IoKind.IRQ: 250 // scale}
    tasks = [cocotb.start_soon(tb.send(kind, n)) for kind, n in counts.items()]
    for task in tasks:
        await task
    await tb.drain()
    tb.check()
    assert tb.board.delivered == counts


@cocotb.test()
async def full_rate(dut):
    """No idle cycles, stalls or backpressure: request messages cross back to back (one
    beat per cycle), and responses and interrupts alternate with one switch cycle each
    (not checked through the link, which adds its own framing)."""
    tb = TB(dut, "full_rate", 0.0, 0.0, 0.0)
    await tb.reset()
    n = 50
    tasks = [cocotb.start_soon(tb.send(kind, n)) for kind in IoKind]
    for task in tasks:
        await task
    await tb.drain()
    tb.check()
    if tb.through_link:
        return      # framing, LCRC and ACKs cost link cycles: the bench of hdl/link.py
    down, up = tb.fire_cycles["down"], tb.fire_cycles["up"]
    assert down[-1] - down[0] == 4 * n - 1, f"request beats not back to back: {down[:12]}"
    assert up[-1] - up[0] <= 4 * 2 * n - 1, f"up: {up[-1] - up[0]} cycles for {2 * n} messages"


# ---------------------------------------------------------------- pytest entry
# pytest entry of the TC_IO tunnel's cocotb bench (tb/io_tunnel): every configuration on
# every installed simulator. ``VFMIG_SEED`` picks the seed (tb/common/seeds.py; each cocotb
# test logs the seed it derives from it); ``IO_TUNNEL_TESTCASE`` runs one cocotb test only.

SEED = bench_seed(20240801)   # VFMIG_SEED overrides it


@pytest.mark.parametrize("config", sorted(CONFIGS))
@pytest.mark.parametrize("sim", ["verilator", "icarus"])
def test_io_tunnel(sim: str, config: str) -> None:
    if not simulator_available(sim):
        pytest.skip(f"{sim} is not installed")
    print(f"cocotb io_tunnel tests on {sim}, config {config}, COCOTB_RANDOM_SEED={SEED}")
    run_tests(sim, f"io_tunnel_{config}", lambda: tunnel_pair(config),
              "tb.io_tunnel.test_io_tunnel",
              parameters=CONFIGS[config], extra_env=config_env(config), seed=SEED,
              testcase=os.environ.get("IO_TUNNEL_TESTCASE") or None)
