"""cocotb tests of the migration engines (hdl/mig_engine.py) on the system top.

Run through tb/mig_engine/test_mig_engine.py, which builds one System per capability-flag
set (``tb.mig_engine.CONFIGS``).  The register port (AXI4-Lite) is driven by
``tb.system.vmm.control_bus`` and VM traffic by ``tb.system.env.VmBfm``; every response is
predicted by one ``model.state.GoldenVF`` per VF (``tb.system.traffic.Scoreboard``).

- ``vfio_arcs``: from every reachable state of VF 0 (reached by legal requests), request
  every state; DEVICE_STATE must be the last state of ``model.vfio.path`` (or unchanged
  with INVALID_TRANSITION), LOCATION.migrating / STATUS.error / MIGRATIONS must follow the
  migrations opened and abandoned on the way.
- ``abort_rollback``: abort from PRE_COPY, PRE_COPY_P2P, STOP_COPY and STOP (by RUNNING,
  RUNNING_P2P or RESUMING) with VM traffic running before, during and after.
- ``commit_migrations``: a stop-copy-only and a pre-copy migration commit under traffic.
- ``reject_no_free_slot``: MIG_REJECT when the offload device is full changes nothing.

Each test logs its seed (tb/common/seeds.py: cocotb's per-test seed, derived from
``COCOTB_RANDOM_SEED`` and the test's name), so ``VFMIG_SEED`` alone reproduces a run.
"""

from __future__ import annotations

import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge, Timer

from model.config import Device
from model.protocol import Reason
from model.regmap import CONTROL_CLEAR_ERROR, CONTROL_COMMIT, GLOBAL, ErrorCode
from model.state import Op
from model.vfio import DeviceState, path, supported_states
from tb.common.runner import bench_matrix, run_tests
from tb.common.seeds import bench_seed, generator_seeds
from tb.mig_engine import CONFIGS, build, to_env
from tb.system.env import VmBfm
from tb.system.link import SystemLink
from tb.system.traffic import Scoreboard, TrafficGenerator
from tb.system.vmm import CLOCK_NS, Location, Status, Vmm, control_bus

from . import from_env

S = DeviceState
OPENS = (S.PRE_COPY, S.PRE_COPY_P2P, S.STOP_COPY)      # entering one opens a migration
ROLLBACK = (S.RUNNING, S.RUNNING_P2P, S.RESUMING)      # entering one abandons it
VF0, VF1 = 0, 1


def walk(migrating: bool, states: list[DeviceState]) -> tuple[bool, int]:
    """The spec's migration bookkeeping along a path: (migration open at the end, aborts)."""
    aborts = 0
    for state in states:
        if migrating and state in ROLLBACK:
            migrating, aborts = False, aborts + 1
        elif not migrating and state in OPENS:
            migrating = True
    return migrating, aborts


class TB:
    def __init__(self, dut, idle_prob: float = 0.2):
        self.dut, self.config = dut, from_env()
        self.layout = self.config.layout
        self.log = dut._log
        rng_seed, link_seed = generator_seeds(self.log, 2, f"config {self.config.to_dict()}")
        self.rng = random.Random(rng_seed)
        cocotb.start_soon(Clock(dut.clk, CLOCK_NS, unit="ns").start())
        self.link = SystemLink(dut, seed=link_seed, log=self.log)   # the wires, no faults
        self.link.start()
        self.bus = control_bus(dut)
        self.vmm = Vmm(self.bus, self.config, self.log, progress=self.log.info)
        self.bfm = VmBfm(dut, self.config, random.Random(self.rng.getrandbits(32)),
                         idle_prob=idle_prob, resp_backpressure=0.1, irq_backpressure=0.1)
        self.sb = Scoreboard(self.layout, self.config.n_vfs)
        self.bfm.on_issued = self.sb.issued
        self.bfm.on_response = self.sb.response
        self.bfm.on_interrupt = self.sb.interrupt
        self.gen = TrafficGenerator(self.layout, self.config.n_vfs, self.config.tag_bits,
                                    random.Random(self.rng.getrandbits(32)), error_prob=0.0)
        lay = self.layout
        # READ/WRITE/ADD traffic stays off the MSI-X table and PBA
        self.data_words = list(range(lay.csr_words)) + list(range(lay.mem_base,
                                                                  lay.image_words))
        self.flags = self.config.flags
        self.have = supported_states(self.flags)
        self._traffic = None
        self._traffic_on = False

    async def start(self) -> None:
        await self.bfm.reset()
        self.bfm.start()
        # the VF units sweep their memories after reset: keep the state port idle
        await self.cycles(self.config.host_slots * self.layout.stride + 20)
        caps = await self.bus.read(GLOBAL["CAPS"])
        assert caps & 7 == int(self.flags), f"CAPS 0x{caps:08x}, flags {self.flags!r}"

    async def cycles(self, n: int) -> None:
        if n > 1:
            await Timer((n - 1) * CLOCK_NS, "ns")
        await RisingEdge(self.dut.clk)

    # -- registers
    async def state(self, vf: int) -> DeviceState:
        return S(await self.vmm.read(vf, "DEVICE_STATE") & 7)

    async def status(self, vf: int) -> Status:
        return await self.vmm.status(vf)

    async def location(self, vf: int) -> Location:
        return await self.vmm.location(vf)

    async def request(self, vf: int, target: DeviceState) -> Status:
        return await self.vmm.request(vf, target)

    async def clear_error(self, vf: int) -> None:
        await self.vmm.write(vf, "CONTROL", 1 << CONTROL_CLEAR_ERROR)

    async def migrations(self, vf: int) -> tuple[int, int]:
        word = await self.vmm.read(vf, "MIGRATIONS")
        return word & 0xFFFF, word >> 16

    async def wait_precopy_round(self, vf: int, timeout: int = 50_000) -> None:
        """Round 0 has gone over (PRECOPY_INITIAL_BYTES = 0) and a dirty round ran or the
        pre-copy converged."""
        waited = 0
        while True:
            initial = await self.vmm.read(vf, "PRECOPY_INITIAL_BYTES")
            rounds = await self.vmm.read(vf, "ROUNDS")
            status = await self.status(vf)
            if initial == 0 and (rounds >= 1 or status.converged):
                return
            assert not status.error and waited < timeout, (
                f"VF {vf}: pre-copy round: INITIAL_BYTES {initial}, ROUNDS {rounds}, {status}")
            await self.cycles(16)
            waited += 22

    async def commit(self, vf: int, source: Device) -> None:
        await self.vmm.write(vf, "CONTROL", 1 << CONTROL_COMMIT)
        await self.vmm.poll(vf, "LOCATION", lambda w: (w & 1) != source, "the commit")
        await self.vmm.poll(vf, "DEVICE_STATE", lambda w: w & 7 == S.RUNNING,
                            "RUNNING after the commit")

    # -- VM traffic
    def start_traffic(self, weights: dict[int, float]) -> None:
        self._traffic_on = True
        self._traffic = cocotb.start_soon(self._traffic_body(weights))

    async def _traffic_body(self, weights: dict[int, float]) -> None:
        rng = random.Random(self.rng.getrandbits(32))
        vfs, w = list(weights), list(weights.values())
        while self._traffic_on:
            vf = rng.choices(vfs, w)[0]
            op = rng.choices((Op.READ, Op.WRITE, Op.ADD), (0.3, 0.4, 0.3))[0]
            data = rng.getrandbits(32) if op == Op.WRITE else rng.randrange(1, 1 << 16)
            await self.bfm.send(self.gen.request(vf, op, rng.choice(self.data_words), data))

    async def stop_traffic(self) -> None:
        self._traffic_on = False
        if self._traffic is not None:
            await self._traffic
            self._traffic = None
        await self.drain()

    async def drain(self, timeout: int = 50_000) -> None:
        waited = 0
        while self.bfm.queued or self.sb.outstanding():
            assert waited < timeout, (f"{self.bfm.queued} requests not accepted, "
                                      f"{self.sb.outstanding()} unanswered after {waited} "
                                      f"cycles")
            await self.cycles(16)
            waited += 16

    async def fill(self, vf: int) -> None:
        """WRITE a random value to every CSR and memory word of ``vf``."""
        for addr in self.data_words:
            await self.bfm.send(self.gen.request(vf, Op.WRITE, addr, self.rng.getrandbits(32)))

    async def readback(self, *vfs: int) -> None:
        """READ every word of each image (the scoreboard compares with the golden VF)."""
        for vf in vfs:
            for addr in range(self.layout.image_words):
                await self.bfm.send(self.gen.request(vf, Op.READ, addr, 0, "readback"))
        await self.drain()

    def check_scoreboard(self) -> None:
        totals = self.sb.finish()
        self.log.info("scoreboard: %s", totals.to_dict())
        assert self.sb.ok(), "\n".join(self.sb.messages)
        assert totals.requests == totals.responses_checked > 0
        assert totals.image_mismatches == 0

    async def expect_home(self, vf: int, device: Device, slot: int) -> None:
        state, loc = await self.state(vf), await self.location(vf)
        assert state == S.RUNNING, f"VF {vf}: {state.name}, expected RUNNING"
        assert (loc.device, loc.slot, loc.migrating) == (device, slot, False), (
            f"VF {vf}: LOCATION {loc}, expected {device.label} slot {slot}, not migrating")


# ---------------------------------------------------------------- (a) every VFIO arc

START_VARIANTS = (
    ("RUNNING", ()),
    ("RUNNING_P2P", (S.RUNNING_P2P,)),
    ("STOP", (S.STOP,)),
    ("RESUMING", (S.RESUMING,)),
    ("PRE_COPY", (S.PRE_COPY,)),
    ("PRE_COPY_P2P", (S.PRE_COPY_P2P,)),
    ("STOP_COPY", (S.STOP_COPY,)),
    ("STOP_COPY after PRE_COPY", (S.PRE_COPY, S.STOP_COPY)),
    ("STOP after STOP_COPY", (S.STOP_COPY, S.STOP)),
)


@cocotb.test()
async def vfio_arcs(dut):
    """Every (reachable state, requested state) pair of VF 0, against model.vfio.path."""
    tb = TB(dut, idle_prob=0.0)
    await tb.start()
    await tb.fill(VF0)
    await tb.fill(VF1)
    await tb.drain()
    variants = [(name, setup) for name, setup in START_VARIANTS
                if all(s in tb.have for s in setup)]
    cases = invalid = aborted = 0
    for name, setup in variants:
        for target in S:
            # from RUNNING at home, walk the setup requests to the start state
            migrating = False
            current = S.RUNNING
            for step in setup:
                st = await tb.request(VF0, step)
                assert st.error == 0, f"setup {name}: request {step.name}: {st}"
                migrating, _ = walk(migrating, path(current, step, tb.flags))
                current = step
            assert await tb.state(VF0) == current, f"setup {name} did not reach {current.name}"
            loc = await tb.location(VF0)
            assert loc.migrating == migrating, f"setup {name}: LOCATION {loc}"
            await tb.clear_error(VF0)
            before = await tb.migrations(VF0)
            what = f"{name} -> {target.name}"

            st = await tb.request(VF0, target)
            state, loc = await tb.state(VF0), await tb.location(VF0)
            requested = S(await tb.vmm.read(VF0, "REQUESTED_STATE") & 7)
            after = await tb.migrations(VF0)
            try:
                states = path(current, target, tb.flags)
            except ValueError:
                states = None
            if states is None:
                invalid += 1
                assert st.error == ErrorCode.INVALID_TRANSITION, f"{what}: {st}"
                assert state == current, f"{what}: invalid, yet DEVICE_STATE {state.name}"
                assert requested == current, f"{what}: REQUESTED_STATE {requested.name}"
                assert loc.migrating == migrating, f"{what}: LOCATION {loc}"
                assert after == before, f"{what}: MIGRATIONS {before} -> {after}"
            else:
                end = states[-1] if states else current
                still, aborts = walk(migrating, states)
                aborted += aborts
                assert state == end, f"{what}: DEVICE_STATE {state.name}, path {states}"
                assert requested == target, f"{what}: REQUESTED_STATE {requested.name}"
                want = ((ErrorCode.ABORTED, Reason.REQUESTED) if aborts
                        else (ErrorCode.NONE, Reason.NONE))
                assert (st.error, st.reason) == want, f"{what}: {st}, expected {want}"
                assert not st.busy
                assert loc.migrating == still, f"{what}: LOCATION {loc}, migrating {still}"
                assert after == (before[0], before[1] + aborts), (
                    f"{what}: MIGRATIONS {before} -> {after}, {aborts} abort(s) expected")
            assert (loc.device, loc.slot) == (Device.HOST, VF0), f"{what}: LOCATION {loc}"
            cases += 1
            # back home
            st = await tb.request(VF0, S.RUNNING)
            await tb.clear_error(VF0)
            await tb.expect_home(VF0, Device.HOST, VF0)
    tb.log.info("%d arcs checked (%d invalid, %d migrations abandoned) over %d start states",
                cases, invalid, aborted, len(variants))
    assert cases == 8 * len(variants)
    # dozens of abandoned migrations later: images intact, and a real one still commits
    await tb.readback(VF0, VF1)
    await tb.request(VF0, S.STOP_COPY)
    await tb.request(VF0, S.STOP)
    await tb.commit(VF0, Device.HOST)
    await tb.expect_home(VF0, Device.OFFLOAD, 0)
    await tb.readback(VF0, VF1)
    tb.check_scoreboard()


# ---------------------------------------------------------------- (b) abort and rollback

@cocotb.test()
async def abort_rollback(dut):
    """Aborts from every state before commit, with traffic before, during and after."""
    tb = TB(dut)
    await tb.start()
    if S.PRE_COPY not in tb.have:
        tb.log.info("no PRE_COPY: aborts from STOP_COPY and STOP only")
    await tb.fill(VF0)
    await tb.fill(VF1)
    tb.start_traffic({VF0: 3.0, VF1: 1.0})
    await tb.cycles(300)
    plan = [
        ((S.PRE_COPY,), S.RUNNING),
        ((S.PRE_COPY, S.PRE_COPY_P2P), S.RUNNING),
        ((S.PRE_COPY, S.PRE_COPY_P2P), S.RUNNING_P2P),
        ((S.PRE_COPY, S.STOP_COPY), S.RUNNING),
        ((S.PRE_COPY, S.STOP_COPY), S.RESUMING),
        ((S.PRE_COPY, S.STOP_COPY, S.STOP), S.RUNNING),
        ((S.STOP_COPY,), S.RUNNING),
        ((S.STOP_COPY, S.STOP), S.RUNNING_P2P),
        ((S.STOP_COPY, S.STOP), S.RUNNING),
    ]
    done = 0
    home = (Device.HOST, VF0)
    for round_trip in (False, True):
        if round_trip:
            # the same aborts with the offload device as the source
            await tb.request(VF0, S.STOP_COPY)
            await tb.request(VF0, S.STOP)
            await tb.commit(VF0, Device.HOST)
            home = (Device.OFFLOAD, 0)
            await tb.cycles(200)
        for steps, abort_by in plan:
            if not all(s in tb.have for s in (*steps, abort_by)):
                continue
            before = await tb.migrations(VF0)
            for step in steps:
                st = await tb.request(VF0, step)
                assert st.error == 0, f"{steps}: request {step.name}: {st}"
                if step == S.PRE_COPY:
                    await tb.wait_precopy_round(VF0)
            assert await tb.state(VF0) == steps[-1]
            assert (await tb.location(VF0)).migrating
            await tb.cycles(tb.rng.randint(20, 200))   # traffic (held, if stopped)
            st = await tb.request(VF0, abort_by)
            what = f"abort from {steps[-1].name} by {abort_by.name} on {home[0].label}"
            assert (st.error, st.reason) == (ErrorCode.ABORTED, Reason.REQUESTED), (
                f"{what}: {st}")
            assert await tb.state(VF0) == abort_by, what
            loc = await tb.location(VF0)
            assert ((loc.device, loc.slot, loc.migrating) == (*home, False)), f"{what}: {loc}"
            after = await tb.migrations(VF0)
            assert after == (before[0], before[1] + 1), f"{what}: MIGRATIONS {after}"
            if abort_by != S.RUNNING:
                await tb.request(VF0, S.RUNNING)
            await tb.clear_error(VF0)
            await tb.expect_home(VF0, *home)
            await tb.cycles(tb.rng.randint(50, 200))  # traffic at the source again
            done += 1
            tb.log.info("%s: rolled back", what)
    await tb.stop_traffic()
    await tb.readback(VF0, VF1)
    tb.check_scoreboard()
    assert done >= 4, f"only {done} aborts ran"


# ---------------------------------------------------------------- (c) committed migrations

@cocotb.test()
async def commit_migrations(dut):
    """A stop-copy-only migration host -> offload, then a pre-copy one back (stop-copy when
    the device has no PRE_COPY), under traffic; images read back equal the golden model."""
    tb = TB(dut)
    await tb.start()
    await tb.fill(VF0)
    await tb.fill(VF1)
    tb.start_traffic({VF0: 2.0, VF1: 1.0})
    await tb.cycles(300)

    st = await tb.request(VF0, S.STOP_COPY)
    assert st.error == 0, st
    assert await tb.state(VF0) == S.STOP_COPY
    st = await tb.request(VF0, S.STOP)
    assert st.ready and st.error == 0, st
    await tb.commit(VF0, Device.HOST)
    await tb.expect_home(VF0, Device.OFFLOAD, 0)
    words = await tb.vmm.read(VF0, "WORDS_SENT")
    assert words == tb.layout.image_words, f"stop-copy only sent {words} words"
    assert await tb.vmm.read(VF0, "DOWNTIME") > 0
    await tb.cycles(300)

    if S.PRE_COPY in tb.have:
        st = await tb.request(VF0, S.PRE_COPY)
        assert st.error == 0, st
        await tb.vmm.poll(VF0, "STATUS", lambda w: Status.from_word(w).converged,
                          "pre-copy convergence")
        assert await tb.vmm.read(VF0, "PRECOPY_INITIAL_BYTES") == 0
    st = await tb.request(VF0, S.STOP_COPY)
    assert st.error == 0, st
    st = await tb.request(VF0, S.STOP)
    assert st.ready and st.error == 0, st
    await tb.commit(VF0, Device.OFFLOAD)
    await tb.expect_home(VF0, Device.HOST, 0)
    assert await tb.migrations(VF0) == (2, 0)
    assert await tb.migrations(VF1) == (0, 0)
    await tb.cycles(300)
    await tb.stop_traffic()
    await tb.readback(VF0, VF1)
    tb.check_scoreboard()


# ---------------------------------------------------------------- (d) MIG_REJECT

@cocotb.test()
async def reject_no_free_slot(dut):
    """VF 1 fills the offload device's only slot; VF 0's migration is refused with
    REJECTED/NO_SLOT and nothing changes: both VFs keep serving with intact images."""
    tb = TB(dut)
    await tb.start()
    await tb.fill(VF0)
    await tb.fill(VF1)
    tb.start_traffic({VF0: 1.0, VF1: 1.0})
    await tb.request(VF1, S.STOP_COPY)
    await tb.request(VF1, S.STOP)
    await tb.commit(VF1, Device.HOST)
    await tb.expect_home(VF1, Device.OFFLOAD, 0)
    await tb.cycles(200)
    counts = [await tb.migrations(VF0), await tb.migrations(VF1)]

    targets = [t for t in (S.PRE_COPY, S.PRE_COPY_P2P, S.STOP_COPY) if t in tb.have]
    for target in targets:
        st = await tb.request(VF0, target)
        assert (st.error, st.reason) == (ErrorCode.REJECTED, Reason.NO_SLOT), (
            f"{target.name}: {st}")
        state = await tb.state(VF0)
        # No migration opened.  VFIO lets a failed multi-arc request leave the device in
        # a state on its way; PRE_COPY from RUNNING has no intermediate state at all.
        on_the_way = [S.RUNNING] + path(S.RUNNING, target, tb.flags)[:-1]
        assert state in on_the_way, f"{target.name}: rejected, DEVICE_STATE {state.name}"
        if target == S.PRE_COPY:
            assert state == S.RUNNING
        loc = await tb.location(VF0)
        assert (loc.device, loc.slot, loc.migrating) == (Device.HOST, VF0, False), loc
        await tb.clear_error(VF0)
        await tb.request(VF0, S.RUNNING)
        await tb.expect_home(VF0, Device.HOST, VF0)
        await tb.expect_home(VF1, Device.OFFLOAD, 0)
        await tb.cycles(100)
    assert [await tb.migrations(VF0), await tb.migrations(VF1)] == counts
    await tb.stop_traffic()
    await tb.readback(VF0, VF1)
    tb.check_scoreboard()


# ---------------------------------------------------------------- pytest entry
# pytest entry of the migration-engine cocotb bench (tb/mig_engine) on the system top:
# every capability-flag set (its own build) on Verilator and Icarus.  ``VFMIG_SEED``
# picks the seed; each cocotb test logs the seed it derives from it.

SEED = bench_seed(20240612)


@bench_matrix(CONFIGS)
def test_cocotb_mig_engine(sim: str, config: str) -> None:
    cfg = CONFIGS[config]
    run_tests(sim, f"mig_system_{config}", lambda: build(cfg), __name__,
              parameters=cfg.to_dict(), extra_env=to_env(cfg), seed=SEED)
