"""cocotb module of the downtime bench (``tb/bench/downtime.py``): one migration per test.

Both tests reset the system top, wait until the VF units have cleared their memories,
start the same seeded write traffic on VF 0 (one WRITE to a random memory word every
``write_interval`` cycles) and, after ``warmup_cycles``, migrate VF 0 from the host to the
offload device through the VFIO registers with the VMM of ``tb/system/vmm.py``:

* ``precopy``: PRE_COPY, wait for STATUS.converged, STOP_COPY, STOP, commit;
* ``stopcopy``: STOP_COPY straight from RUNNING (the hardware walks RUNNING -> RUNNING_P2P ->
  STOP -> STOP_COPY and sends the whole image while the VF is held), STOP, commit.

Each test merges its figures (DOWNTIME, ROUNDS, WORDS_SENT, total cycles, writes issued,
the longest time a write waited to be accepted) into the JSON file named by
``VFMIG_BENCH_OUT``.  Figures are recorded, not asserted; a test fails only when the
migration itself fails (timeout, rollback, VMM check) or when words read back from the
VF at its new place differ from what the traffic wrote — the reason is written to the
JSON file too.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.triggers import RisingEdge, Timer, with_timeout

from hdl.formats import system_request_layout, system_response_layout
from model.config import Device
from model.state import Op
from tb.bench.downtime import Knobs
from tb.common.streams import StreamDriver, StreamMonitor
from tb.system.link import SystemLink
from tb.system.vmm import CLOCK_NS, MigrationStep, Vmm, control_bus

VF = 0
WRITE_TAGS = 128      # tags [0, 128) for the traffic, [128, 256) for the read-back
SAMPLE_WORDS = 48     # written words read back after the migration (plus a few unwritten)


async def wait_cycles(clk, n: int) -> None:
    """n rising edges, with the simulator (not Python) counting all but the last."""
    if n > 1:
        await Timer((n - 1) * CLOCK_NS, "ns")
    await RisingEdge(clk)


class WriteTraffic:
    """One WRITE to a random memory word of VF 0 every ``interval`` cycles (seeded)."""

    def __init__(self, dut, config, rng: random.Random, interval: int):
        self.dut, self.layout, self.rng, self.interval = dut, config.layout, rng, interval
        self.driver = StreamDriver(dut, "req", dut.clk, system_request_layout(config))
        self.written: dict[int, int] = {}
        self.count = 0
        self.max_wait = 0      # cycles a write waited to be accepted (held at the router)
        self._stopping = False

    def stop(self) -> None:
        self._stopping = True

    async def run(self) -> None:
        lay, rng = self.layout, self.rng
        while not self._stopping:
            await wait_cycles(self.dut.clk, self.interval - 1)
            addr = lay.mem_base + rng.randrange(lay.mem_words)
            data = rng.getrandbits(32)
            start = get_sim_time("ns")
            await self.driver.send({"vf": VF, "op": int(Op.WRITE), "addr": addr, "data": data,
                                    "tag": self.count % WRITE_TAGS})
            self.max_wait = max(self.max_wait, round((get_sim_time("ns") - start) / CLOCK_NS) - 1)
            self.written[addr] = data
            self.count += 1


async def reset_and_wait_for_clear(dut, config) -> None:
    """Reset, then wait until VF 0 accepts a READ: after reset each VF unit clears its
    memory for n_slots * stride cycles, not accepting requests meanwhile."""
    dut.rst.value = 1
    await wait_cycles(dut.clk, 5)
    dut.rst.value = 0
    clear = max(config.host_slots, config.offload_slots) * config.layout.stride
    await wait_cycles(dut.clk, max(1, clear - 16))
    driver = StreamDriver(dut, "req", dut.clk, system_request_layout(config))
    try:
        await with_timeout(driver.send({"vf": VF, "op": int(Op.READ),
                                        "addr": config.layout.mem_base, "tag": 255}),
                           (clear + 2000) * CLOCK_NS, "ns")
    except TimeoutError:
        raise AssertionError(f"VF {VF}: no READ accepted {2 * clear + 2000} cycles after "
                             f"reset (memory clear should take {clear})") from None
    dut.req__valid.value = 0


async def read_back(dut, config, traffic: WriteTraffic, rng: random.Random) -> int:
    """Read a sample of written (and never-written) words at the VF's new place."""
    lay = config.layout
    written = sorted(traffic.written)
    addrs = rng.sample(written, min(SAMPLE_WORDS, len(written)))
    untouched = [a for a in range(lay.mem_base, lay.mem_base + lay.mem_words)
                 if a not in traffic.written]
    addrs += rng.sample(untouched, min(8, len(untouched)))
    got: dict[int, dict] = {}  # READ responses by tag (the late WRITE ones are ignored)

    def collect(beat: dict) -> None:
        if beat["tag"] >= WRITE_TAGS:
            got[beat["tag"] - WRITE_TAGS] = beat

    monitor = StreamMonitor(dut, "resp", dut.clk, system_response_layout(config),
                            callback=collect)
    driver = StreamDriver(dut, "req", dut.clk, system_request_layout(config))
    for i, addr in enumerate(addrs):  # len(addrs) <= WRITE_TAGS: every tag is unique
        await driver.send({"vf": VF, "op": int(Op.READ), "addr": addr, "tag": WRITE_TAGS + i})
    waited = 0
    while len(got) < len(addrs):
        if waited > 2000:
            raise AssertionError(f"read-back: {len(addrs) - len(got)} of {len(addrs)} READ "
                                 f"responses missing after {waited} cycles")
        await wait_cycles(dut.clk, 10)
        waited += 10
    bad = []
    for i, addr in enumerate(addrs):
        beat, want = got[i], traffic.written.get(addr, 0)
        if beat["error"] or beat["data"] != want:
            bad.append(f"word {addr}: read 0x{beat['data']:08x} (error {beat['error']}), "
                       f"expected 0x{want:08x}")
    if bad:
        raise AssertionError(f"read-back after the migration: {len(bad)} of {len(addrs)} "
                             f"words differ: " + "; ".join(bad[:4]))
    monitor.stop()
    return len(addrs)


def merge_result(path: str, mode: str, result: dict) -> None:
    out = Path(path)
    doc = json.loads(out.read_text()) if out.exists() else {}
    doc[mode] = result
    out.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")


async def measure(dut, mode: str) -> None:
    knobs = Knobs.from_env()
    config = knobs.config
    log = dut._log
    log.info("downtime bench, %s: seed %d, %d-word images, one write every %d cycles",
             mode, knobs.seed, config.layout.image_words, knobs.write_interval)
    result: dict = {"mode": mode, "seed": knobs.seed}
    try:
        dut.req__valid.value = 0
        dut.resp__ready.value = 1
        dut.irq__ready.value = 1
        bus = control_bus(dut)
        cocotb.start_soon(Clock(dut.clk, CLOCK_NS, unit="ns").start())
        SystemLink(dut, seed=knobs.seed, log=log).start()   # the link's wires, no faults
        await reset_and_wait_for_clear(dut, config)
        rng = random.Random(knobs.seed)  # the same traffic for both modes
        traffic = WriteTraffic(dut, config, random.Random(rng.getrandbits(32)),
                               knobs.write_interval)
        task = cocotb.start_soon(traffic.run())
        await wait_cycles(dut.clk, knobs.warmup_cycles)
        vmm = Vmm(bus, config, log, progress=log.info)
        rec = await vmm.migrate(MigrationStep(VF, "pre" if mode == "precopy" else "stop"))
        writes = traffic.count
        await wait_cycles(dut.clk, 200)  # the VF serves again at its new place
        traffic.stop()
        await task
        await wait_cycles(dut.clk, 4 * config.host_latency + 50)
        result.update(downtime=rec.downtime_cycles, rounds=rec.precopy_rounds,
                      words_sent=rec.words_sent, total_cycles=rec.total_cycles,
                      writes=writes, max_write_wait=traffic.max_wait,
                      result=rec.result, problems=list(vmm.problems))
        if rec.result != "committed" or rec.target != Device.OFFLOAD:
            raise AssertionError(f"VF {VF}: the {mode} migration ended {rec.result} "
                                 f"({rec.error or 'no error'}), expected committed to offload")
        if vmm.problems:
            raise AssertionError(f"VMM checks failed: {'; '.join(vmm.problems)}")
        result["checked_words"] = await read_back(dut, config, traffic,
                                                  random.Random(rng.getrandbits(32)))
        log.info("%s: downtime %d cycles, %d rounds, %d words sent, total %d cycles, "
                 "%d writes (longest wait %d cycles)", mode, rec.downtime_cycles,
                 rec.precopy_rounds, rec.words_sent, rec.total_cycles, writes, traffic.max_wait)
    except BaseException as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        merge_result(knobs.out, mode, result)


@cocotb.test()
async def precopy(dut):
    """Pre-copy until converged, then stop-copy of the residual."""
    await measure(dut, "precopy")


@cocotb.test()
async def stopcopy(dut):
    """Stop-copy only: the whole image while the VF is held."""
    await measure(dut, "stopcopy")
