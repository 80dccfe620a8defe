"""cocotb + pyuvm tests of hdl/link.py on the generated Verilog of ``tb.link.LinkPair``.

Run through tb/link/test_link.py (or ``python -m tb.bench.link`` for the goodput
figures), which builds the configuration named in ``VFMIG_BENCH_CONFIG``. Every test derives its
seed from ``COCOTB_RANDOM_SEED`` and its name, logs it, and a failure is reproduced by
running that test alone with the same ``COCOTB_RANDOM_SEED`` (``VFMIG_SEED=<seed>
LINK_TESTCASE=<test> pytest tb/link/test_link.py``).

Environment (``LinkEnv``):
- a message agent (sequencer + driver) that hands messages to the BFM, per port and class;
- the link-fault agent (``LinkFaultAgent``): one ``tb.common.link_fault.WireLane`` (a
  seeded ``FaultyChannel``) per direction between the two wires (bit flips at a BER over
  flit and sop bits, bursts, dropped, duplicated and delayed flits, link-down windows);
- the monitor: publishes every message accepted by a port (``sent_ap``) and every message a
  port delivered (``delivered_ap``);
- the scoreboard (``model.link.DeliveryScoreboard``): every message delivered once, in
  order, intact, per direction and class; checked in ``check_phase``;
- coverage: planned bins (fault types seen, replays, NAKs, timeouts, duplicates dropped,
  backpressure, credit stalls, cut messages); ``report_phase`` fails when a bin a test
  requires was never hit.

All per-cycle work runs in one coroutine (``LinkBfm``): sample in ReadOnly, act after the
rising edge (the wires through the lanes' ``sample``/``drive``, the one wire driver of
every bench); payloads are read only when valid (Icarus starts memories as X).
"""

from __future__ import annotations

import json
import os
import random
import zlib
from collections import Counter, deque
from collections.abc import Callable

import cocotb
import pytest
import pyuvm
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge
from pyuvm import (
    ConfigDB,
    uvm_analysis_port,
    uvm_component,
    uvm_driver,
    uvm_env,
    uvm_factory,
    uvm_monitor,
    uvm_scoreboard,
    uvm_sequence,
    uvm_sequence_item,
    uvm_subscriber,
    uvm_test,
)

from model.link import (
    STAT_NAMES,
    DeliveryScoreboard,
    FaultConfig,
    LinkParams,
    TrafficClass,
)
from model.protocol import Message, MsgType
from tb.common.link_fault import FaultyChannel, WireHandles, WireLane, derive_seeds
from tb.common.runner import run_tests, simulator_available
from tb.common.seeds import bench_seed
from tb.common.uvm import PlannedCoverage, SequencedAgent
from tb.link import CONFIGS, PORTS, config_env, config_from_env, link_pair

CLOCK_NS = 10
GOODPUT_TARGET = 0.90   # issue 4: migration payload per flit capacity at BER 0, default link
KEYS = [(port, tc) for port in PORTS for tc in TrafficClass]
OTHER = {"a": "b", "b": "a"}


def _stream_name(port: str, tc: int, side: str) -> str:
    return f"{port}_{TrafficClass(tc).name.lower()}_{side}"


def unpack_stats(value: int) -> dict[str, int]:
    return {name: (value >> (32 * i)) & 0xFFFF_FFFF for i, name in enumerate(STAT_NAMES)}


# ---------------------------------------------------------------- the bus functional model
class LinkBfm:
    """Drives the four message inputs, takes the four outputs (with backpressure), and
    closes both wires through the fault agent, one cycle per loop."""

    def __init__(self, dut, params: LinkParams, rng: random.Random,
                 idle_prob: float = 0.0, backpressure: float = 0.0,
                 ready: Callable[[str, int, int], bool] | None = None, depth: int = 4):
        self.dut, self.params, self.rng = dut, params, rng
        self.faults: LinkFaultAgent | None = None     # set by the test in connect_phase
        self.idle_prob, self.backpressure, self.ready_fn = idle_prob, backpressure, ready
        self.depth = depth
        h = {}
        for port in PORTS:
            for tc in TrafficClass:
                for side in ("in", "out"):
                    name = _stream_name(port, tc, side)
                    for sig in ("valid", "ready", "payload"):
                        h[f"{name}_{sig}"] = getattr(dut, f"{name}__{sig}")
        self.h = h
        self.on_sent: list[Callable] = []        # (key, words, first_cycle, last_cycle)
        self.on_delivered: list[Callable] = []   # (key, words, cycle)
        # What the BFM drives: kept across clear() so it always matches the DUT's inputs.
        self.offering = dict.fromkeys(KEYS, False)
        self.taking = dict.fromkeys(KEYS, False)
        self.clear()
        for port in PORTS:
            for tc in TrafficClass:
                h[f"{_stream_name(port, tc, 'in')}_valid"].value = 0
                h[f"{_stream_name(port, tc, 'in')}_payload"].value = 0
                h[f"{_stream_name(port, tc, 'out')}_ready"].value = 0

    def clear(self) -> None:
        self.cycle = 0
        self.pending: dict[tuple, deque[list[int]]] = {key: deque() for key in KEYS}
        self.word = dict.fromkeys(KEYS, 0)
        self.first_cycle = dict.fromkeys(KEYS, 0)
        self.partial: dict[tuple, list[int]] = {key: [] for key in KEYS}
        self.flits = Counter()                 # valid flits per transmitting port
        self.counting = True
        self.events = Counter()                # coverage-relevant observations
        self.stall_run = dict.fromkeys(KEYS, 0)

    async def reset(self, cycles: int = 4) -> None:
        self.dut.rst.value = 1
        for _ in range(cycles):
            await RisingEdge(self.dut.clk)
        self.dut.rst.value = 0

    def start(self):
        return cocotb.start_soon(self._run())

    def queued(self) -> int:
        return sum(len(q) for q in self.pending.values())

    async def queue(self, port: str, tc: int, words: list[int]) -> None:
        key = (port, tc)
        while len(self.pending[key]) >= self.depth:
            await RisingEdge(self.dut.clk)
        self.pending[key].append(list(words))

    async def _run(self) -> None:
        h, clk = self.h, self.dut.clk
        edge, settle = RisingEdge(clk), ReadOnly()
        in_names = {key: _stream_name(*key, "in") for key in KEYS}
        out_names = {key: _stream_name(*key, "out") for key in KEYS}
        while True:
            await settle
            lanes = self.faults.lanes
            tx = {port: lane.sample() for port, lane in lanes.items()}
            accepted = {key: self.offering[key] and int(h[f"{in_names[key]}_ready"].value)
                        for key in KEYS}
            stalled = {key: self.offering[key] and not accepted[key] for key in KEYS}
            got = {}
            for key in KEYS:
                name = out_names[key]
                if int(h[f"{name}_valid"].value):
                    if self.taking[key]:
                        got[key] = int(h[f"{name}_payload"].value)
                    else:
                        self.events["backpressure"] += 1
            await edge
            cycle = self.cycle = self.cycle + 1
            # wires: what was driven this cycle reaches the other port's rx next cycle
            for port, lane in lanes.items():
                if tx[port] is not None and self.counting:
                    self.flits[port] += 1
                lane.drive(tx[port])
            for key in KEYS:
                self._input(key, accepted[key], stalled[key], cycle)
                if key in got:
                    self._output(key, got[key], cycle)
                take = (self.ready_fn(key[0], key[1], cycle) if self.ready_fn
                        else not (self.backpressure and self.rng.random() < self.backpressure))
                if take != self.taking[key]:
                    h[f"{out_names[key]}_ready"].value = int(take)
                    self.taking[key] = take

    def _input(self, key, accepted: bool, stalled: bool, cycle: int) -> None:
        h, name = self.h, _stream_name(*key, "in")
        queue = self.pending[key]
        if accepted and queue:
            words = queue[0]
            if self.word[key] == 0:
                self.first_cycle[key] = cycle - 1
            self.word[key] += 1
            if self.word[key] == len(words):
                queue.popleft()
                self.word[key] = 0
                for cb in self.on_sent:
                    cb(key, words, self.first_cycle[key], cycle - 1)
        self.stall_run[key] = self.stall_run[key] + 1 if stalled else 0
        if self.stall_run[key] == 3 * self.params.max_frame_flits:
            self.events["credit_or_slot_stall"] += 1
        if stalled:
            return   # keep offering the same beat: a stream never withdraws a beat
        if queue and not (self.idle_prob and self.rng.random() < self.idle_prob):
            words = queue[0]
            word = self.word[key]
            h[f"{name}_payload"].value = words[word] | int(word == len(words) - 1) << 32
            if not self.offering[key]:
                h[f"{name}_valid"].value = 1
                self.offering[key] = True
        elif self.offering[key]:
            h[f"{name}_valid"].value = 0
            self.offering[key] = False

    def _output(self, key, payload: int, cycle: int) -> None:
        self.partial[key].append(payload & 0xFFFF_FFFF)
        if payload >> 32 & 1:
            words, self.partial[key] = self.partial[key], []
            for cb in self.on_delivered:
                cb(key, words, cycle - 1)

    def read_stats(self) -> dict[str, dict[str, int]]:
        return {port: unpack_stats(int(getattr(self.dut, f"{port}_stats").value))
                for port in PORTS}


# ---------------------------------------------------------------- transactions
class MessageItem(uvm_sequence_item):
    def __init__(self, name: str = "message", port: str = "a", tc: int = 0,
                 words: list[int] | None = None):
        super().__init__(name)
        self.port, self.tc, self.words = port, tc, words or []

    def __str__(self) -> str:
        return f"{self.port}/{TrafficClass(self.tc).name} {len(self.words)} words"


class RandomMessageSeq(uvm_sequence):
    """``count`` messages of 1..``max_words`` random words, random port and class (the
    test's ``traffic`` knobs choose the mix)."""

    count = 40
    max_words = 150
    ports = PORTS
    classes = tuple(TrafficClass)
    rng = random.Random(0)   # the test sets its own before starting the sequence

    async def body(self):
        rng = self.rng
        for i in range(self.count):
            words = [rng.getrandbits(32) for _ in range(rng.randint(1, self.max_words))]
            item = MessageItem(f"m{i}", rng.choice(self.ports), rng.choice(self.classes),
                               words)
            await self.start_item(item)
            await self.finish_item(item)


class StateDataSeq(RandomMessageSeq):
    """Migration only, port a to b: STATE_DATA messages of the default 64-word chunk
    (model.protocol encoding: 2 header words, 64 payload words, CRC word)."""

    count = 60
    chunk_words = 64

    async def body(self):
        rng = self.rng
        for i in range(self.count):
            payload = [rng.getrandbits(32) for _ in range(self.chunk_words)]
            msg = Message(MsgType.STATE_DATA, vf=i % 8, arg=i * self.chunk_words,
                          payload=payload)
            item = MessageItem(f"state_data{i}", "a", TrafficClass.MIG, msg.to_words())
            await self.start_item(item)
            await self.finish_item(item)


# ---------------------------------------------------------------- components
class MessageDriver(uvm_driver):
    def build_phase(self):
        self.bfm: LinkBfm = ConfigDB().get(self, "", "BFM")

    async def run_phase(self):
        while True:
            item = await self.seq_item_port.get_next_item()
            await self.bfm.queue(item.port, item.tc, item.words)
            self.seq_item_port.item_done()


class MessageAgent(SequencedAgent):
    DRIVER = MessageDriver


class LinkFaultAgent(uvm_component):
    """The link-fault agent between the two wires: one ``WireLane`` per direction (keyed by
    the transmitting port). ``configure`` swaps the faults, reseeds and restarts the
    counters; the BFM moves the lanes each cycle."""

    def build_phase(self):
        self.params: LinkParams = ConfigDB().get(self, "", "PARAMS")
        dut = cocotb.top
        self.handles = {port: (WireHandles.of(dut, f"{port}_tx"),
                               WireHandles.of(dut, f"{OTHER[port]}_rx")) for port in PORTS}
        self.configure(ConfigDB().get(self, "", "FAULTS"), ConfigDB().get(self, "", "SEED"))
        for lane in self.lanes.values():
            lane.idle()

    def configure(self, faults: FaultConfig, seed: int) -> None:
        self.fault_config, self.seed = faults, seed
        seeds = dict(zip(PORTS, derive_seeds(seed, len(PORTS)), strict=True))
        self.lanes = {port: WireLane(src, dst, FaultyChannel(self.params.link_width, faults,
                                                             seeds[port]))
                      for port, (src, dst) in self.handles.items()}
        self.logger.info("faults %s, fault seed %d", faults, seed)

    def counts(self) -> Counter:
        total = Counter()
        for lane in self.lanes.values():
            total.update(lane.channel.counts())
        return total

    def report_phase(self):
        for port, lane in self.lanes.items():
            self.logger.info("wire %s->%s: %s", port, OTHER[port], lane.channel.counts())


class LinkMonitor(uvm_monitor):
    def build_phase(self):
        self.bfm: LinkBfm = ConfigDB().get(self, "", "BFM")
        self.sent_ap = uvm_analysis_port("sent_ap", self)
        self.delivered_ap = uvm_analysis_port("delivered_ap", self)

    def connect_phase(self):
        # Keys are (direction = sending port, tc): a message port b delivers came from a.
        self.bfm.on_sent.append(
            lambda key, words, first, last: self.sent_ap.write((key, words, first)))
        self.bfm.on_delivered.append(
            lambda key, words, cycle: self.delivered_ap.write(((OTHER[key[0]], key[1]),
                                                               words, cycle)))


class LinkScoreboard(uvm_scoreboard):
    """Every message accepted by one port is delivered by the other once, in order and
    intact (model.link.DeliveryScoreboard); also records per-message latency."""

    def build_phase(self):
        self.board = DeliveryScoreboard()
        self.sent_export = uvm_subscriber.uvm_AnalysisImp("sent_export", self, self.write_sent)
        self.delivered_export = uvm_subscriber.uvm_AnalysisImp(
            "delivered_export", self, self.write_delivered)
        self.started: dict[tuple, deque[int]] = {}
        self.latencies: dict[tuple, list[int]] = {}
        self.delivered_at: dict[tuple, list[int]] = {}
        self.longest = 0

    def write_sent(self, event) -> None:
        key, words, first = event
        self.board.sent(key, words)
        self.longest = max(self.longest, len(words))
        self.started.setdefault(key, deque()).append(first)

    def write_delivered(self, event) -> None:
        key, words, cycle = event
        self.board.delivered(key, words)
        starts = self.started.get(key)
        if starts:
            self.latencies.setdefault(key, []).append(cycle - starts.popleft())
        self.delivered_at.setdefault(key, []).append(cycle)

    def outstanding(self) -> int:
        return self.board.outstanding()

    def problems(self) -> list[str]:
        return self.board.problems()

    def check_phase(self):
        problems = self.problems()
        for text in problems[:10]:
            self.logger.error(text)
        self.logger.info("scoreboard: %d messages sent, %d delivered",
                         self.board.sent_count, self.board.delivered_count)
        assert not problems, f"link scoreboard: {len(problems)} problems, first: {problems[:3]}"


class LinkCoverage(PlannedCoverage, uvm_component):
    """Planned bins; a test lists the bins it needs in ConfigDB ``COVERAGE``."""

    COVERGROUP = "link"
    PLANNED = ("bit_flip", "burst", "drop", "duplicate", "delay", "link_down", "replay",
               "nak", "timeout", "duplicate_dropped", "backpressure", "credit_or_slot_stall",
               "cut_message", "both_classes", "both_directions")

    def build_phase(self):
        self.init_bins()

    def sample(self, faults: Counter, stats: dict[str, dict[str, int]], bfm: LinkBfm,
               board: LinkScoreboard, params: LinkParams) -> None:
        hits = self.hits
        hits["bit_flip"] += faults["flipped_flits"] - faults["bursts"] > 0
        for bin_, counter in (("burst", "bursts"), ("drop", "dropped"),
                              ("duplicate", "duplicated"), ("delay", "delays"),
                              ("link_down", "down_lost")):
            hits[bin_] += faults[counter]
        for bin_, counter in (("replay", "tx_replays"), ("nak", "naks_sent"),
                              ("timeout", "tx_timeouts"), ("duplicate_dropped",
                                                           "rx_duplicates")):
            hits[bin_] += sum(s[counter] for s in stats.values())
        hits["backpressure"] += bfm.events["backpressure"]
        hits["credit_or_slot_stall"] += bfm.events["credit_or_slot_stall"]
        keys = {k for k, v in board.delivered_at.items() if v}
        hits["both_classes"] += len({tc for _, tc in keys}) == 2
        hits["both_directions"] += len({d for d, _ in keys}) == 2
        hits["cut_message"] += board.longest > params.max_payload_words

class LinkEnv(uvm_env):
    def build_phase(self):
        self.messages = MessageAgent("messages", self)
        self.faults = LinkFaultAgent("faults", self)
        self.monitor = LinkMonitor("monitor", self)
        self.scoreboard = LinkScoreboard("scoreboard", self)
        self.coverage = LinkCoverage("coverage", self)

    def connect_phase(self):
        self.monitor.sent_ap.connect(self.scoreboard.sent_export)
        self.monitor.delivered_ap.connect(self.scoreboard.delivered_export)


# ---------------------------------------------------------------- tests
class LinkTestBase(uvm_test):
    """Reset, run the message sequence, wait until every message arrived, settle, sample
    coverage from the fault agent, the BFM and the DUT counters.

    Subclasses override ``faults()``, ``knobs()``, ``coverage()``, ``ready()``,
    ``stimulus()`` and ``check()``."""

    timeout_cycles = 60_000

    def build_phase(self):
        self.cfg_name, self.params = config_from_env()
        salt = zlib.crc32(type(self).__name__.encode())
        self.seed = (cocotb.RANDOM_SEED ^ salt) & 0xFFFF_FFFF
        self.rng = random.Random(self.seed)
        self.dut = cocotb.top
        env_seed = os.environ.get("COCOTB_RANDOM_SEED", "?")
        self.logger.info("%s on config %s %s: seed %d (from COCOTB_RANDOM_SEED=%s and the "
                         "test name); rerun: VFMIG_SEED=%s LINK_TESTCASE=%s pytest "
                         "tb/link/test_link.py -k %s", type(self).__name__, self.cfg_name,
                         self.params, self.seed, env_seed, env_seed, type(self).__name__,
                         self.cfg_name)
        ConfigDB().set(None, "*", "PARAMS", self.params)
        ConfigDB().set(None, "*", "FAULTS", self.faults())
        ConfigDB().set(None, "*", "SEED", self.rng.getrandbits(32))
        ConfigDB().set(None, "*", "COVERAGE", self.coverage())
        self.seq_rng = random.Random(self.rng.getrandbits(32))
        self.bfm = LinkBfm(self.dut, self.params, random.Random(self.rng.getrandbits(32)),
                           ready=self.ready(), **self.knobs())
        ConfigDB().set(None, "*", "BFM", self.bfm)
        self.env = LinkEnv("env", self)

    def connect_phase(self):
        self.bfm.faults = self.env.faults

    def sequence(self, name: str, cls: type = RandomMessageSeq, **attrs) -> uvm_sequence:
        """A sequence made by the factory (a test may override the type), with the test's
        message RNG and ``attrs`` set on it."""
        seq = uvm_factory().create_object_by_type(cls, name=name)
        seq.rng = self.seq_rng
        for attr, value in attrs.items():
            setattr(seq, attr, value)
        return seq

    def faults(self) -> FaultConfig:
        return FaultConfig()

    def knobs(self) -> dict:
        return {"idle_prob": 0.2, "backpressure": 0.3}

    def coverage(self) -> tuple[str, ...]:
        return ("both_classes", "both_directions", "backpressure")

    def ready(self):
        return None

    async def stimulus(self) -> None:
        await self.sequence("messages").start(self.env.messages.seqr)

    def check(self) -> None:
        """Test-specific checks after the scoreboard saw everything (stats are read)."""

    async def quiet(self) -> None:
        board = self.env.scoreboard
        start = self.bfm.cycle
        while self.bfm.queued() or board.outstanding():
            if board.board.errors:      # a wrong delivery: stop and let check_phase report
                break
            if self.bfm.cycle - start > self.timeout_cycles:
                raise AssertionError(f"not delivered after {self.timeout_cycles} cycles: "
                                     f"{board.outstanding()} outstanding, "
                                     f"{self.bfm.queued()} not sent, stats "
                                     f"{self.bfm.read_stats()}")
            await RisingEdge(self.dut.clk)
        self.bfm.counting = False
        for _ in range(64):          # the last ACKs and FC DLLPs land
            await RisingEdge(self.dut.clk)

    async def run_phase(self):
        self.raise_objection()
        cocotb.start_soon(Clock(self.dut.clk, CLOCK_NS, unit="ns").start())
        await self.bfm.reset()
        self.bfm.start()
        await self.stimulus()
        await self.quiet()
        self.stats = self.bfm.read_stats()
        self.logger.info("DUT counters: %s", self.stats)
        self.logger.info("flits on the wires: %s in %d cycles", dict(self.bfm.flits),
                         self.bfm.cycle)
        self.env.coverage.sample(self.env.faults.counts(), self.stats, self.bfm,
                                 self.env.scoreboard, self.params)
        self.check()
        self.drop_objection()


@pyuvm.test()
class CleanTraffic(LinkTestBase):
    """Random messages both ways on both classes (some cut into several packets), idle
    cycles and backpressure, no faults: everything arrives and nothing is ever replayed."""

    def coverage(self):
        return ("both_classes", "both_directions", "backpressure", "cut_message")

    def check(self):
        for port, s in self.stats.items():
            assert s["tx_replays"] == s["rx_crc_errors"] == s["naks_sent"] == 0, (port, s)
            assert s["tx_timeouts"] == s["rx_overflows"] == 0, (port, s)


class FaultTestBase(LinkTestBase):
    def coverage(self):
        return ("both_classes", "both_directions", "replay")


@pyuvm.test()
class BitErrors(FaultTestBase):
    """Independent bit flips at BER 1e-4 on both wires (flit and sop bits)."""

    def faults(self):
        return FaultConfig(ber=1e-4)

    def coverage(self):
        return (*super().coverage(), "bit_flip", "nak")


@pyuvm.test()
class BurstErrors(FaultTestBase):
    """Bursts of 16 consecutive flipped bits in 1% of the flits."""

    def faults(self):
        return FaultConfig(burst_rate=0.01, burst_bits=16)

    def coverage(self):
        return (*super().coverage(), "burst", "nak")


@pyuvm.test()
class DroppedFlits(FaultTestBase):
    """1% of the flits lost (data, headers and DLLPs alike)."""

    def faults(self):
        return FaultConfig(drop_rate=0.01)

    def coverage(self):
        return (*super().coverage(), "drop", "nak")


@pyuvm.test()
class DuplicatedFlits(FaultTestBase):
    """1% of the flits delivered twice."""

    def faults(self):
        return FaultConfig(dup_rate=0.01)

    def coverage(self):
        return (*super().coverage(), "duplicate")


@pyuvm.test()
class DelayedFlits(LinkTestBase):
    """The wire stalls for 1..8 cycles after 5% of the flits (jitter, no loss): nothing
    needs repairing, so nothing may be replayed."""

    def faults(self):
        return FaultConfig(delay_rate=0.05, delay_max=8)

    def coverage(self):
        return ("both_classes", "both_directions", "delay")

    def check(self):
        assert all(s["tx_replays"] == 0 for s in self.stats.values()), self.stats


@pyuvm.test()
class LinkDown(FaultTestBase):
    """Both wires down for 40 cycles (shorter than the replay timeout) and later for
    three replay timeouts: the second outage is repaired by the replay timer."""

    def faults(self):
        t = self.params.replay_timeout
        return FaultConfig(down=((400, 40), (1500, 3 * t)))

    def coverage(self):
        return (*super().coverage(), "link_down", "timeout")


@pyuvm.test()
class MixedFaultsBackpressure(FaultTestBase):
    """Every fault type at once, heavy consumer backpressure and idle sources."""

    def faults(self):
        return FaultConfig(ber=3e-5, burst_rate=0.003, drop_rate=0.003, dup_rate=0.003,
                           delay_rate=0.01, down=((2000, 100),))

    def knobs(self):
        return {"idle_prob": 0.3, "backpressure": 0.6}

    def coverage(self):
        return (*super().coverage(), "bit_flip", "drop", "duplicate", "delay",
                "link_down", "backpressure")


@pyuvm.test()
class MigrationStallKeepsIoFlowing(LinkTestBase):
    """Port b refuses TC_MIG until cycle ``release`` while a sends migration and I/O
    messages: a runs out of MIG credits, yet every TC_IO message is delivered before the
    release, and every MIG message after it."""

    release = 3000

    class Seq(RandomMessageSeq):
        count = 40
        max_words = 67
        ports = ("a",)

    def ready(self):
        release = self.release
        return lambda port, tc, cycle: not (port == "b" and tc == TrafficClass.MIG
                                            and cycle < release)

    def knobs(self):
        # Deep BFM queues: the driver must not block behind the stalled class itself.
        return {"idle_prob": 0.1, "backpressure": 0.0, "depth": 1000}

    def coverage(self):
        return ("both_classes", "credit_or_slot_stall")

    async def stimulus(self):
        await self.sequence("io_and_mig", self.Seq).start(self.env.messages.seqr)

    def check(self):
        at = self.env.scoreboard.delivered_at
        io, mig = at.get(("a", TrafficClass.IO), []), at.get(("a", TrafficClass.MIG), [])
        assert io and mig
        assert max(io) < self.release, f"I/O waited for migration: last I/O at {max(io)}"
        assert min(mig) >= self.release


@pyuvm.test()
class SequenceWrap(LinkTestBase):
    """More packets than the 4096 sequence numbers (one-word TC_IO messages, a to b) with
    0.2% of the flits dropped, so replays, duplicates and ACKs cross the wrap. Default
    configuration only (elsewhere it logs and passes)."""

    count = 4300

    class Seq(RandomMessageSeq):
        max_words = 1
        ports = ("a",)
        classes = (TrafficClass.IO,)

    def faults(self):
        return FaultConfig(drop_rate=0.002)

    def knobs(self):
        return {"idle_prob": 0.0, "backpressure": 0.1}

    def coverage(self):
        return ("replay",) if self.cfg_name == "default" else ()

    async def stimulus(self):
        if self.cfg_name != "default":
            self.logger.info("SequenceWrap runs on the default configuration only")
            return
        await self.sequence("tiny", self.Seq, count=self.count).start(self.env.messages.seqr)

    def check(self):
        if self.cfg_name == "default":
            assert self.stats["a"]["tx_packets"] == self.count > 4096
            assert self.stats["b"]["rx_packets"] == self.count


@pyuvm.test()
class GoodputAtBer0(LinkTestBase):
    """STATE_DATA messages of the default chunk from a to b, no faults, no backpressure
    (the factory swaps the random sequence for ``StateDataSeq``): migration payload words
    delivered per flit capacity actually used on a's wire must reach 0.90. With
    ``LINK_BENCH_OUT`` set it also measures the BER points of ``LINK_BENCH_BERS`` (each
    after a fresh reset) and the TC_IO latency while a migration runs, and writes them."""

    timeout_cycles = 400_000

    def build_phase(self):
        uvm_factory().set_type_override_by_type(RandomMessageSeq, StateDataSeq)
        super().build_phase()

    def knobs(self):
        return {"idle_prob": 0.0, "backpressure": 0.0}

    def coverage(self):
        return ()

    async def measure(self, ber: float, count: int) -> dict:
        bfm, board = self.bfm, self.env.scoreboard
        self.env.faults.configure(FaultConfig(ber=ber), self.rng.getrandbits(32))
        await bfm.reset()
        bfm.clear()
        done = board.delivered_at.setdefault(("a", TrafficClass.MIG), [])
        start_sent, start_done = board.board.sent_count, len(done)
        await self.sequence("state_data", count=count).start(self.env.messages.seqr)
        await self.quiet()
        cycles = done[-1] if len(done) > start_done else 0   # the BFM counts from the reset
        stats = bfm.read_stats()
        delivered = board.board.sent_count - start_sent
        words = delivered * StateDataSeq.chunk_words
        flits = bfm.flits["a"]
        W = self.params.words_per_flit
        point = {"ber": ber, "messages": delivered,
                 "goodput_ratio": round(words / (flits * W), 4),
                 "flits": flits, "payload_words": words,
                 "payload_words_per_cycle": round(words / max(1, cycles), 4),
                 "replays": stats["a"]["tx_replays"], "naks": stats["b"]["naks_sent"],
                 "timeouts": stats["a"]["tx_timeouts"],
                 "crc_errors": stats["b"]["rx_crc_errors"],
                 "bit_flips": self.env.faults.counts()["bit_flips"]}
        self.logger.info("goodput point %s", point)
        return point

    async def io_latency(self, with_migration: bool) -> dict:
        """3-word TC_IO messages every 97 cycles from a, alone or while a streams
        STATE_DATA to b; latency = first beat accepted at a to last beat delivered at b."""
        bfm, board = self.bfm, self.env.scoreboard
        self.env.faults.configure(FaultConfig(), self.rng.getrandbits(32))
        await bfm.reset()
        bfm.clear()
        board.latencies.clear()
        rng = self.rng
        mig = None
        if with_migration:
            mig = cocotb.start_soon(self.sequence("state_data", count=40).start(
                self.env.messages.seqr))
            for _ in range(200):
                await RisingEdge(self.dut.clk)
        for _ in range(20):
            await bfm.queue("a", TrafficClass.IO, [rng.getrandbits(32) for _ in range(3)])
            for _ in range(97):
                await RisingEdge(self.dut.clk)
        if mig is not None:
            await mig
        await self.quiet()
        lat = board.latencies[("a", TrafficClass.IO)]
        return {"messages": len(lat), "mean": round(sum(lat) / len(lat), 1), "max": max(lat)}

    async def stimulus(self):
        out = os.environ.get("LINK_BENCH_OUT")
        bers = [float(b) for b in os.environ.get("LINK_BENCH_BERS", "0").split(",")]
        points = []
        for ber in bers:
            count = int(os.environ.get("LINK_BENCH_MESSAGES", "60"))
            if ber >= 3e-4:
                count = max(10, count // 4)
            points.append(await self.measure(ber, count))
        self.points = points
        doc = {"goodput_ratio": points[0]["goodput_ratio"] if bers[0] == 0 else None,
               "ideal_goodput_ratio": round(self.params.ideal_goodput(64, 67), 4),
               "link": {"config": self.cfg_name, **vars(self.params)},
               "curve": points}
        if out:
            idle = await self.io_latency(False)
            busy = await self.io_latency(True)
            doc["io_latency_cycles"] = {"idle_link": idle, "during_migration": busy,
                                        "mig_share": self.params.mig_share}
            with open(out, "w") as f:
                json.dump(doc, f, indent=2)
        self.doc = doc

    def check(self):
        first = self.points[0]
        if first["ber"] == 0:
            # The target (0.90) is for the default link; any configuration must come
            # within 3% of its own framing bound (the rest: FC refreshes on the wire).
            ideal = self.params.ideal_goodput(StateDataSeq.chunk_words,
                                              StateDataSeq.chunk_words + 3)
            target = GOODPUT_TARGET if self.params == LinkParams() else 0.97 * ideal
            assert first["replays"] == 0
            assert target <= first["goodput_ratio"] <= ideal + 1e-9, (first, target, ideal)
        latency = self.doc.get("io_latency_cycles")
        if latency:
            # While both wait, TC_IO waits for at most the packet being filled (the share
            # is spent as the migration stream runs on its own).
            bound = latency["idle_link"]["max"] + self.params.max_payload_words + 8
            assert latency["during_migration"]["max"] <= bound, latency


# ---------------------------------------------------------------- pytest entry
# pytest entry of the link's cocotb/pyuvm bench (tb/link): every configuration on every
# installed simulator. ``VFMIG_SEED`` picks the seed (tb/common/seeds.py; each cocotb test
# logs the seed it derives from it); ``LINK_TESTCASE`` runs one cocotb test only.

SEED = bench_seed(20240701)   # VFMIG_SEED overrides it


@pytest.mark.parametrize("config", sorted(CONFIGS))
@pytest.mark.parametrize("sim", ["verilator", "icarus"])
def test_link(sim: str, config: str) -> None:
    if not simulator_available(sim):
        pytest.skip(f"{sim} is not installed")
    print(f"cocotb link tests on {sim}, config {config}, COCOTB_RANDOM_SEED={SEED}")
    run_tests(sim, f"link_{config}", lambda: link_pair(config), "tb.link.test_link",
              parameters=CONFIGS[config], extra_env=config_env(config), seed=SEED,
              testcase=os.environ.get("LINK_TESTCASE") or None)
