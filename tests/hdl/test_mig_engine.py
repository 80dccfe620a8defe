# amaranth: UnusedElaboratable=no
"""hdl/mig_engine.py through hdl/system.py in amaranth.sim: the VFIO register interface.

Two engines, two VF units and two DMAs on a tiny configuration.  A sequential bench drives
the register port the way a VFIO driver would and sends VM requests; every response is
checked against one ``model.state.GoldenVF`` per VF, and images are read back word by word
through READ requests after each migration.  Invalid requests are the ones
``model.vfio.path`` refuses; error codes are ``model.regmap.ErrorCode``.  (The exhaustive
arc-by-arc check is the cocotb bench, tb/mig_engine.)
"""

from __future__ import annotations

import json
import random

import pytest
from amaranth.sim import Simulator

from hdl.system import System
from model.config import Device, SystemConfig
from model.protocol import (
    HEADER_WORDS,
    Malformed,
    Message,
    MsgType,
    Reason,
    classify,
    unpack_header,
)
from model.protocol_vectors import DEFAULT_OUT as VECTORS_PATH
from model.protocol_vectors import VECTOR_MAX_CHUNK, VECTOR_N_VFS
from model.regmap import (
    CONTROL_CLEAR_ERROR,
    CONTROL_COMMIT,
    DOWNTIME_REGS,
    LOCATION_MIGRATING,
    STATUS_BUSY,
    STATUS_CONVERGED,
    STATUS_READY_TO_COMMIT,
    ErrorCode,
    vf_reg,
)
from model.state import GoldenVF, ImageLayout, Op, image_digest, zero_image_digest
from model.vfio import DeviceState, MigrationFlags, path
from tb.mig_engine.harness import EngineHarness
from tests.hdl.simutil import run_sim, scenario_test, stream_put
from tests.hdl.system_link import close_link

S = DeviceState
LAYOUT = ImageLayout(csr_words=4, msix_vectors=2, mem_words=32, block_words=8)
CONFIG = SystemConfig(n_vfs=2, host_slots=2, offload_slots=1, layout=LAYOUT, chunk_words=16)
STOP_COPY_ONLY = SystemConfig(n_vfs=2, host_slots=2, offload_slots=1, layout=LAYOUT,
                              chunk_words=16, flags=MigrationFlags.STOP_COPY)
# A longer image, so a pre-copy round 0 lasts a few hundred cycles.
LONG = SystemConfig(n_vfs=2, host_slots=2, offload_slots=1, chunk_words=16,
                    layout=ImageLayout(csr_words=4, msix_vectors=2, mem_words=480,
                                       block_words=8))
# Two offload slots: a VF can move each way at the same time.
TWO_WAY = SystemConfig(n_vfs=2, host_slots=2, offload_slots=2, layout=LAYOUT, chunk_words=16)
HOST, OFFLOAD = 0, 1
LIMIT = 20_000  # cycles any single wait may take


class Bench:
    """Register-port and VM-request helpers for one System, plus a GoldenVF per VF."""

    def __init__(self, config: SystemConfig, seed: int = 0):
        self.config, self.layout = config, config.layout
        self.dut = System(config)
        self.rng = random.Random(seed)
        self.golden = [GoldenVF(config.layout) for _ in range(config.n_vfs)]
        self.tag = 0
        self.cycles = 0

    def run(self, scenario) -> None:
        dut = self.dut
        sim = Simulator(dut)
        sim.add_clock(1e-6)

        async def bench(ctx):
            ctx.set(dut.irq.ready, 1)
            await scenario(ctx, self)

        sim.add_testbench(bench)
        close_link(sim, dut)
        sim.run()

    async def tick(self, ctx, n: int = 1) -> None:
        for _ in range(n):
            await ctx.tick()
            self.cycles += 1

    async def until(self, ctx, flag, what: str, *more) -> list:
        """Tick (counted) until a clock edge samples ``flag`` high, at most LIMIT cycles
        (else AssertionError ``what``); returns ``more`` sampled at that edge."""
        for _ in range(LIMIT):
            _, _, hit, *values = await ctx.tick().sample(flag, *more)
            self.cycles += 1
            if hit:
                return values
        raise AssertionError(what)

    # -- register port: a one-access-at-a-time AXI4-Lite master on ``System.axil``
    async def _handshake(self, ctx, valid, ready) -> None:
        """Hold ``valid`` until the clock edge that sees ``ready`` (the transfer)."""
        ctx.set(valid, 1)
        await self.until(ctx, ready, f"AXI4-Lite: no handshake on {valid.name}")
        ctx.set(valid, 0)

    async def csr_read(self, ctx, addr: int) -> int:
        axil = self.dut.axil
        ctx.set(axil.araddr, addr)
        await self._handshake(ctx, axil.arvalid, axil.arready)
        ctx.set(axil.rready, 1)
        resp, data = await self.until(ctx, axil.rvalid, f"AXI4-Lite read of 0x{addr:04x}: no R",
                                      axil.rresp, axil.rdata)
        ctx.set(axil.rready, 0)
        assert resp == 0, f"AXI4-Lite read of 0x{addr:04x}: RRESP {resp}"
        return data

    async def csr_write(self, ctx, addr: int, value: int) -> None:
        axil = self.dut.axil
        ctx.set(axil.awaddr, addr)
        ctx.set(axil.wdata, value)
        ctx.set(axil.wstrb, 0b1111)
        ctx.set(axil.awvalid, 1)
        ctx.set(axil.wvalid, 1)
        pending = {"aw", "w"}
        for _ in range(LIMIT):
            _, _, awready, wready = await ctx.tick().sample(axil.awready, axil.wready)
            self.cycles += 1
            if awready and "aw" in pending:
                pending.discard("aw")
                ctx.set(axil.awvalid, 0)
            if wready and "w" in pending:
                pending.discard("w")
                ctx.set(axil.wvalid, 0)
            if not pending:
                break
        ctx.set(axil.bready, 1)
        [resp] = await self.until(ctx, axil.bvalid, f"AXI4-Lite write of 0x{addr:04x}: no B",
                                  axil.bresp)
        ctx.set(axil.bready, 0)
        assert resp == 0, f"AXI4-Lite write of 0x{addr:04x}: BRESP {resp}"

    async def reg(self, ctx, vf: int, name: str) -> int:
        return await self.csr_read(ctx, vf_reg(vf, name))

    async def state(self, ctx, vf: int) -> S:
        return S(await self.reg(ctx, vf, "DEVICE_STATE") & 7)

    async def status(self, ctx, vf: int) -> dict:
        word = await self.reg(ctx, vf, "STATUS")
        return {"error": word & 0xF, "reason": (word >> 4) & 0xF,
                "busy": word >> STATUS_BUSY & 1, "converged": word >> STATUS_CONVERGED & 1,
                "ready": word >> STATUS_READY_TO_COMMIT & 1}

    async def location(self, ctx, vf: int) -> tuple[int, int, int]:
        """(device, slot, migrating)."""
        word = await self.reg(ctx, vf, "LOCATION")
        return word & 1, (word >> 8) & 0xFF, word >> LOCATION_MIGRATING & 1

    async def poll(self, ctx, vf: int, name: str, done, what: str, limit: int = LIMIT) -> int:
        for _ in range(limit):
            value = await self.reg(ctx, vf, name)
            if done(value):
                return value
            await self.tick(ctx, 3)
        raise AssertionError(f"VF {vf}: {what}: {name} still 0x{value:08x} after {limit} polls")

    async def request(self, ctx, vf: int, state: S) -> dict:
        """REQUESTED_STATE = state, then wait until the walker is done (STATUS.busy = 0)."""
        await self.csr_write(ctx, vf_reg(vf, "REQUESTED_STATE"), int(state))
        return await self.wait_not_busy(ctx, vf, f"requesting {state.name}")

    async def wait_not_busy(self, ctx, vf: int, what: str) -> dict:
        await self.poll(ctx, vf, "STATUS", lambda w: not w >> STATUS_BUSY & 1,
                        f"busy after {what}")
        return await self.status(ctx, vf)

    async def clear_error(self, ctx, vf: int) -> None:
        await self.csr_write(ctx, vf_reg(vf, "CONTROL"), 1 << CONTROL_CLEAR_ERROR)

    # -- VM requests (one at a time), checked against the golden model
    async def vm(self, ctx, vf: int, op: Op, addr: int, data: int = 0) -> int:
        dut = self.dut
        self.tag = (self.tag + 1) % (1 << self.config.tag_bits)
        ctx.set(dut.req.payload, {"vf": vf, "op": op, "addr": addr, "data": data,
                                  "tag": self.tag})
        ctx.set(dut.req.valid, 1)
        await self.until(ctx, dut.req.ready, f"VF {vf}: request {op.name} @{addr} never accepted")
        ctx.set(dut.req.valid, 0)
        expected, error = self.golden[vf].request(op, addr, data)
        ctx.set(dut.resp.ready, 1)
        [resp] = await self.until(ctx, dut.resp.valid,
                                  f"VF {vf}: request {op.name} @{addr} never answered",
                                  dut.resp.payload)
        ctx.set(dut.resp.ready, 0)
        got = (int(resp.vf), int(resp.tag), int(resp.data), int(resp.error))
        assert got == (vf, self.tag, expected, int(error)), (
            f"VF {vf}: {op.name} @{addr} data 0x{data:08x} answered {got}, expected "
            f"{(vf, self.tag, expected, int(error))}")
        return got[2]

    def data_words(self) -> list[int]:
        """CSR and memory words: what random VM writes touch (not the MSI-X table/PBA)."""
        lay = self.layout
        return list(range(lay.csr_words)) + list(range(lay.mem_base, lay.image_words))

    async def scribble(self, ctx, vf: int, n: int) -> None:
        """``n`` random WRITE/ADD requests to ``vf``."""
        words = self.data_words()
        for _ in range(n):
            op = self.rng.choice((Op.WRITE, Op.ADD))
            await self.vm(ctx, vf, op, self.rng.choice(words), self.rng.getrandbits(32))

    async def check_image(self, ctx, vf: int) -> None:
        """READ every word of the VF's image (the golden model checks each answer)."""
        for addr in range(self.layout.image_words):
            await self.vm(ctx, vf, Op.READ, addr)

    # -- migration procedures
    async def migrate(self, ctx, vf: int, precopy: bool, writes: int = 0) -> dict:
        """Move ``vf`` to the other device and commit; returns what was observed."""
        src = (await self.location(ctx, vf))[0]
        before = await self.reg(ctx, vf, "MIGRATIONS")
        seen = {}
        if precopy:
            st = await self.request(ctx, vf, S.PRE_COPY)
            assert st["error"] == 0, f"PRE_COPY refused: {st}"
            assert await self.state(ctx, vf) == S.PRE_COPY
            assert await self.location(ctx, vf) == (src, vf if src == HOST else 0, 1)
            await self.scribble(ctx, vf, writes)  # live traffic dirties blocks
            await self.poll(ctx, vf, "STATUS", lambda w: w >> STATUS_CONVERGED & 1,
                            "pre-copy convergence")
            seen["initial_bytes"] = await self.reg(ctx, vf, "PRECOPY_INITIAL_BYTES")
        st = await self.request(ctx, vf, S.STOP_COPY)
        assert st["error"] == 0, f"STOP_COPY refused: {st}"
        assert await self.state(ctx, vf) == S.STOP_COPY
        st = await self.request(ctx, vf, S.STOP)
        assert st["error"] == 0 and st["ready"] == 1, f"STOP after STOP_COPY: {st}"
        assert await self.state(ctx, vf) == S.STOP
        await self.csr_write(ctx, vf_reg(vf, "CONTROL"), 1 << CONTROL_COMMIT)
        await self.poll(ctx, vf, "LOCATION", lambda w: (w & 1) != src, "the commit")
        assert await self.state(ctx, vf) == S.RUNNING
        loc = await self.location(ctx, vf)
        assert loc[0] == 1 - src and loc[2] == 0, f"LOCATION after commit: {loc}"
        assert (await self.status(ctx, vf))["error"] == 0
        after = await self.reg(ctx, vf, "MIGRATIONS")
        assert after == before + 1, f"MIGRATIONS {before:#x} -> {after:#x}"
        seen["words"] = await self.reg(ctx, vf, "WORDS_SENT")
        seen["rounds"] = await self.reg(ctx, vf, "ROUNDS")
        seen["downtime"] = await self.reg(ctx, vf, "DOWNTIME")
        seen["phases"] = {n: await self.reg(ctx, vf, n) for n in DOWNTIME_REGS}
        assert await self.reg(ctx, vf, "DOWNTIME") == seen["downtime"], "still counting"
        return seen


def run(config: SystemConfig, scenario, seed: int = 0) -> Bench:
    bench = Bench(config, seed)
    bench.run(scenario)
    return bench


def engine_test(config: SystemConfig, seed: int = 0):
    """The decorated ``async def test_...(ctx, b)`` becomes a test run on ``Bench(config,
    seed)``."""
    return scenario_test(lambda scenario: run(config, scenario, seed))


# ------------------------------------------------------------------------ tests

def test_live_precopy_migration_each_way():
    """VF 0 host -> offload and back with pre-copy, VM writes before, during and after;
    VF 1 untouched on the host.  Both images read back identical to the golden model."""
    def check_stats(seen, lay):
        assert seen["initial_bytes"] == 0  # round 0 went over completely
        assert seen["words"] >= lay.image_words + lay.meta_words
        assert 0 < seen["downtime"] == sum(seen["phases"].values()), seen
        # a pre-copy migration waits for each of these while the VF is held
        for name in ("DOWNTIME_COPY", "DOWNTIME_SWITCHOVER", "DOWNTIME_COMMIT"):
            assert seen["phases"][name] > 0, seen

    async def scenario(ctx, b: Bench):
        await b.scribble(ctx, 0, 12)
        await b.scribble(ctx, 1, 6)
        seen = await b.migrate(ctx, 0, precopy=True, writes=10)
        check_stats(seen, b.layout)
        assert await b.location(ctx, 0) == (OFFLOAD, 0, 0)
        await b.check_image(ctx, 0)
        await b.scribble(ctx, 0, 10)  # served by the offload device now
        seen = await b.migrate(ctx, 0, precopy=True, writes=10)
        check_stats(seen, b.layout)
        assert await b.location(ctx, 0) == (HOST, 0, 0)
        assert await b.reg(ctx, 0, "MIGRATIONS") == 2
        await b.scribble(ctx, 0, 4)
        await b.check_image(ctx, 0)
        await b.check_image(ctx, 1)
        assert await b.location(ctx, 1) == (HOST, 1, 0)
        assert await b.reg(ctx, 1, "MIGRATIONS") == 0

    run(CONFIG, scenario, seed=1)


@engine_test(CONFIG, seed=2)
async def test_stop_copy_only_migration_each_way(ctx, b: Bench):
    """RUNNING -> STOP_COPY directly walks RUNNING_P2P and STOP and sends the whole image."""
    await b.scribble(ctx, 0, 12)
    for _ in range(2):
        seen = await b.migrate(ctx, 0, precopy=False)
        assert seen["words"] == b.layout.image_words
        assert seen["rounds"] == 0
        await b.check_image(ctx, 0)
        await b.scribble(ctx, 0, 6)
    assert await b.location(ctx, 0) == (HOST, 0, 0)
    assert await b.reg(ctx, 0, "MIGRATIONS") == 2


@engine_test(STOP_COPY_ONLY, seed=3)
async def test_stop_copy_only_device_migrates(ctx, b: Bench):
    await b.scribble(ctx, 1, 12)
    await b.migrate(ctx, 1, precopy=False)
    assert await b.location(ctx, 1) == (OFFLOAD, 0, 0)
    await b.check_image(ctx, 1)


@pytest.mark.parametrize("config,cases", [
    (CONFIG, [(S.RUNNING, S.ERROR)]),
    (STOP_COPY_ONLY, [(S.RUNNING, S.PRE_COPY), (S.RUNNING, S.RUNNING_P2P),
                      (S.RUNNING, S.PRE_COPY_P2P), (S.RUNNING, S.ERROR)]),
], ids=["all_flags", "stop_copy_only"])
def test_invalid_request_leaves_the_state_unchanged(config, cases):
    async def scenario(ctx, b: Bench):
        await b.scribble(ctx, 0, 4)
        for current, target in cases:
            with pytest.raises(ValueError):
                path(current, target, config.flags)  # the model agrees it is invalid
            assert await b.state(ctx, 0) == current
            st = await b.request(ctx, 0, target)
            assert st["error"] == ErrorCode.INVALID_TRANSITION, st
            assert await b.state(ctx, 0) == current
            assert await b.reg(ctx, 0, "REQUESTED_STATE") == current
            assert await b.location(ctx, 0) == (HOST, 0, 0)
            await b.clear_error(ctx, 0)
            assert (await b.status(ctx, 0))["error"] == ErrorCode.NONE
            await b.vm(ctx, 0, Op.READ, b.layout.mem_base)  # still serving

    run(config, scenario)


async def refused_commit(ctx, b: Bench, vf: int, state: S) -> None:
    """CONTROL.COMMIT outside STOP-after-STOP_COPY: COMMIT_REFUSED, nothing moves."""
    loc = await b.location(ctx, vf)
    await b.csr_write(ctx, vf_reg(vf, "CONTROL"), 1 << CONTROL_COMMIT)
    await b.tick(ctx, 50)
    st = await b.status(ctx, vf)
    assert st["error"] == ErrorCode.COMMIT_REFUSED, (state, st)
    assert await b.state(ctx, vf) == state
    assert await b.location(ctx, vf) == loc
    await b.clear_error(ctx, vf)


@engine_test(CONFIG)
async def test_invalid_request_in_the_middle_of_a_migration(ctx, b: Bench):
    """STOP_COPY -> PRE_COPY has no arc: refused, the migration goes on and commits.
    A COMMIT before STOP is refused too."""
    await b.scribble(ctx, 0, 8)
    await refused_commit(ctx, b, 0, S.RUNNING)
    st = await b.request(ctx, 0, S.STOP_COPY)
    assert st["error"] == 0
    await refused_commit(ctx, b, 0, S.STOP_COPY)
    for target in (S.PRE_COPY, S.PRE_COPY_P2P, S.ERROR):
        st = await b.request(ctx, 0, target)
        assert st["error"] == ErrorCode.INVALID_TRANSITION, (target, st)
        assert await b.state(ctx, 0) == S.STOP_COPY
        assert await b.reg(ctx, 0, "REQUESTED_STATE") == S.STOP_COPY
        assert (await b.location(ctx, 0))[2] == 1, "still migrating"
        await b.clear_error(ctx, 0)
    st = await b.request(ctx, 0, S.STOP)
    assert st["ready"] == 1 and st["error"] == 0
    await b.csr_write(ctx, vf_reg(0, "CONTROL"), 1 << CONTROL_COMMIT)
    await b.poll(ctx, 0, "LOCATION", lambda w: w & 1, "the commit")
    await b.check_image(ctx, 0)


@engine_test(CONFIG)
async def test_request_while_busy_is_refused_with_busy(ctx, b: Bench):
    await b.csr_write(ctx, vf_reg(0, "REQUESTED_STATE"), S.PRE_COPY)
    assert (await b.status(ctx, 0))["busy"] == 1  # waiting for MIG_ACCEPT
    await b.csr_write(ctx, vf_reg(0, "REQUESTED_STATE"), S.STOP)
    st = await b.wait_not_busy(ctx, 0, "requesting PRE_COPY")
    assert st["error"] == ErrorCode.BUSY, st
    assert await b.state(ctx, 0) == S.PRE_COPY, "the first request goes on"
    assert await b.reg(ctx, 0, "REQUESTED_STATE") == S.PRE_COPY
    await b.clear_error(ctx, 0)
    st = await b.request(ctx, 0, S.RUNNING)
    assert await b.state(ctx, 0) == S.RUNNING


@engine_test(CONFIG)
async def test_reject_when_the_offload_device_has_no_free_slot(ctx, b: Bench):
    await b.scribble(ctx, 0, 10)
    await b.scribble(ctx, 1, 10)
    await b.migrate(ctx, 1, precopy=False)  # fills the offload device's only slot
    for target in (S.PRE_COPY, S.PRE_COPY_P2P):
        st = await b.request(ctx, 0, target)
        assert st["error"] == ErrorCode.REJECTED and st["reason"] == Reason.NO_SLOT, st
        # no migration was opened: the VF is where it was, in a state on the way
        assert await b.state(ctx, 0) in [S.RUNNING] + path(S.RUNNING, target)[:-1]
        assert await b.location(ctx, 0) == (HOST, 0, 0)
        await b.clear_error(ctx, 0)
        await b.request(ctx, 0, S.RUNNING)
    assert await b.reg(ctx, 0, "MIGRATIONS") == 0
    await b.scribble(ctx, 0, 4)
    await b.check_image(ctx, 0)
    await b.check_image(ctx, 1)
    assert await b.location(ctx, 1) == (OFFLOAD, 0, 0)


@engine_test(CONFIG)
async def test_abort_from_precopy_rolls_back(ctx, b: Bench):
    """PRE_COPY -> RUNNING before commit: ABORT/ABORT_ACK, the VF runs at its source with
    its image (and the writes made during pre-copy) intact; the target slot is free again."""
    await b.scribble(ctx, 0, 12)
    st = await b.request(ctx, 0, S.PRE_COPY)
    assert st["error"] == 0
    await b.scribble(ctx, 0, 8)
    await b.poll(ctx, 0, "PRECOPY_INITIAL_BYTES", lambda v: v == 0, "round 0")
    st = await b.request(ctx, 0, S.RUNNING)
    assert await b.state(ctx, 0) == S.RUNNING
    assert await b.location(ctx, 0) == (HOST, 0, 0)
    assert (st["error"], st["reason"]) == (ErrorCode.ABORTED, Reason.REQUESTED), st
    assert await b.reg(ctx, 0, "MIGRATIONS") == 1 << 16
    await b.clear_error(ctx, 0)
    await b.scribble(ctx, 0, 6)
    await b.check_image(ctx, 0)
    await b.migrate(ctx, 0, precopy=False)  # the offload slot was freed by the abort
    await b.check_image(ctx, 0)


@engine_test(LONG)
async def test_another_vfs_request_does_not_stop_a_running_precopy(ctx, b: Bench):
    """While VF 0 is in PRE_COPY round 0, VF 1 goes RUNNING -> STOP -> RUNNING.  VF 0's
    pre-copy must still converge (STATUS.converged) on its own."""
    st = await b.request(ctx, 0, S.PRE_COPY)
    assert st["error"] == 0
    assert await b.reg(ctx, 0, "PRECOPY_INITIAL_BYTES") > 0, "round 0 still running"
    st = await b.request(ctx, 1, S.STOP)
    assert st["error"] == 0 and await b.state(ctx, 1) == S.STOP
    await b.request(ctx, 1, S.RUNNING)
    await b.poll(ctx, 0, "STATUS", lambda w: w >> STATUS_CONVERGED & 1,
                 "pre-copy convergence", limit=2_000)
    await b.migrate(ctx, 0, precopy=False)  # (stop-copy from PRE_COPY: converged)


@engine_test(TWO_WAY, seed=5)
async def test_migrations_both_ways_at_the_same_time(ctx, b: Bench):
    """VF 0 offload -> host while VF 1 host -> offload: each engine is source and target
    at once, the two message streams share each direction of the channel."""
    await b.scribble(ctx, 0, 8)
    await b.scribble(ctx, 1, 8)
    await b.migrate(ctx, 0, precopy=False)
    for vf in (0, 1):
        st = await b.request(ctx, vf, S.PRE_COPY)
        assert st["error"] == 0, (vf, st)
    for _ in range(3):
        await b.scribble(ctx, 0, 3)
        await b.scribble(ctx, 1, 3)
    for vf in (0, 1):
        await b.poll(ctx, vf, "STATUS", lambda w: w >> STATUS_CONVERGED & 1,
                     f"VF {vf} pre-copy convergence")
    for target in (S.STOP_COPY, S.STOP):
        for vf in (0, 1):
            st = await b.request(ctx, vf, target)
            assert st["error"] == 0, (vf, target, st)
    for vf in (0, 1):
        await b.csr_write(ctx, vf_reg(vf, "CONTROL"), 1 << CONTROL_COMMIT)
    await b.poll(ctx, 0, "LOCATION", lambda w: (w & 1) == HOST, "VF 0 commit")
    await b.poll(ctx, 1, "LOCATION", lambda w: (w & 1) == OFFLOAD, "VF 1 commit")
    for vf in (0, 1):
        assert await b.state(ctx, vf) == S.RUNNING
        assert (await b.status(ctx, vf))["error"] == 0
        await b.check_image(ctx, vf)
    assert await b.reg(ctx, 0, "MIGRATIONS") == 2
    assert await b.reg(ctx, 1, "MIGRATIONS") == 1


def test_a_request_during_the_commit_handshake_is_refused_or_done_not_both():
    """A request written a few cycles after COMMIT: either it is refused (BUSY, and the VF
    ends RUNNING at its new place) or it is carried out without an error, never both."""
    outcomes = []

    async def scenario(ctx, b: Bench):
        for delay in range(14):
            src = (await b.location(ctx, 0))[0]
            await b.request(ctx, 0, S.STOP_COPY)
            await b.request(ctx, 0, S.STOP)
            await b.csr_write(ctx, vf_reg(0, "CONTROL"), 1 << CONTROL_COMMIT)
            await b.tick(ctx, delay)
            await b.csr_write(ctx, vf_reg(0, "REQUESTED_STATE"), S.STOP)
            refused = (await b.status(ctx, 0))["error"] == ErrorCode.BUSY
            await b.poll(ctx, 0, "LOCATION", lambda w, s=src: (w & 1) != s, "the commit")
            await b.wait_not_busy(ctx, 0, "the late request")
            state = await b.state(ctx, 0)
            outcomes.append((delay, refused, state.name))
            assert state == (S.RUNNING if refused else S.STOP), outcomes
            await b.request(ctx, 0, S.RUNNING)
            await b.clear_error(ctx, 0)

    run(CONFIG, scenario)


@engine_test(CONFIG)
async def test_a_request_made_when_status_busy_reads_0_is_not_refused_as_busy(ctx, b: Bench):
    """The VMM's rule: wait for STATUS.busy = 0, then write REQUESTED_STATE."""
    await b.csr_write(ctx, vf_reg(0, "REQUESTED_STATE"), S.PRE_COPY)
    await b.wait_not_busy(ctx, 1, "VF 0's request")
    st = await b.request(ctx, 1, S.STOP)
    assert st["error"] == ErrorCode.NONE, st
    assert await b.state(ctx, 1) == S.STOP
    await b.wait_not_busy(ctx, 0, "requesting PRE_COPY")
    assert await b.state(ctx, 0) == S.PRE_COPY


# ------------------------------------------------------------ bad input at one engine
# One device's engine (tb.mig_engine.harness) with the test as its peer: the receiver must
# drop malformed messages (tests/vectors/protocol_vectors.json, judged by
# model.protocol.classify) and well-formed ones in the wrong protocol state, count each
# under its Malformed reason, and change no VF state or image.  The configuration is the
# vectors' receiver (n_vfs, max_chunk_words), so their verdicts apply unchanged.
PEER = SystemConfig(n_vfs=VECTOR_N_VFS, host_slots=8, offload_slots=2, chunk_words=64,
                    layout=ImageLayout(csr_words=4, msix_vectors=2, mem_words=64,
                                       block_words=8))
PEER_SEED = 20240615
BAD_VECTORS = [v for v in json.loads(VECTORS_PATH.read_text())["vectors"]
               if v["malformed"] != "NONE"]


def _lost_chunk_vfs() -> set[int]:
    """VFs named by the vectors' STATE_DATA dropped for framing or CRC (those poison an
    incoming image of that VF, so the migrating VF must not be one of them)."""
    vfs = set()
    for vector in BAD_VECTORS:
        head = unpack_header(int(vector["words"][0], 16))
        if head["type"] == MsgType.STATE_DATA and vector["malformed"] in ("FRAMING", "CRC"):
            vfs.add(head["vf"])
    return vfs


class Peer:
    """Plays the other device's engine against an ``EngineHarness``."""

    def __init__(self, device: Device):
        self.config, self.layout = PEER, PEER.layout
        self.dut = EngineHarness(PEER, device)
        self.received: list[list[int]] = []   # every message the engine sent, in order
        self.rng = random.Random(PEER_SEED)

    def run(self, scenario) -> None:
        dut = self.dut

        async def collect(ctx):
            beats = []
            async for _, _, valid, ready, beat in ctx.tick().sample(dut.tx.valid, dut.tx.ready,
                                                                    dut.tx.payload):
                if valid and ready:
                    beats.append(int(beat.data))
                    if beat.last:
                        self.received.append(beats)
                        beats = []

        async def bench(ctx):
            ctx.set(dut.tx.ready, 1)
            ctx.set(dut.walk_status.ready, 1)
            # the VF unit sweeps its memory after reset: keep the state port idle
            await ctx.tick().repeat(PEER.slots(self.dut.device) * self.layout.stride + 20)
            await scenario(ctx, self)

        run_sim(dut, bench, processes=[collect])

    async def send(self, ctx, words: list[int]) -> None:
        for i, word in enumerate(words):
            await stream_put(ctx, self.dut.rx, {"data": word, "last": i == len(words) - 1})

    async def settle(self, ctx, cycles: int = 40) -> None:
        await ctx.tick().repeat(cycles)

    async def expect(self, ctx, count: int, what: str, limit: int = LIMIT) -> list[Message]:
        """Wait until the engine has sent ``count`` messages; all of them, decoded."""
        for _ in range(limit):
            if len(self.received) >= count:
                break
            await ctx.tick()
        else:
            raise AssertionError(f"{what}: only {len(self.received)} of {count} messages sent")
        return [Message.from_words(w, PEER.n_vfs, PEER.max_chunk_words)
                for w in self.received]

    def vf_state(self, ctx, vf: int) -> dict:
        ctx.set(self.dut.rd_vf, vf)
        rd = self.dut.rd
        return {"here": ctx.get(rd.here), "state": S(ctx.get(rd.state)),
                "requested": S(ctx.get(rd.requested)), "slot": ctx.get(rd.slot),
                "migrating": ctx.get(rd.migrating)}

    def snapshot(self, ctx) -> dict:
        """Every VF's engine registers and every slot's image digest."""
        return {"vfs": [self.vf_state(ctx, v) for v in range(PEER.n_vfs)],
                "digests": [ctx.get(self.dut.digest[s])
                            for s in range(PEER.slots(self.dut.device))]}

    def counts(self, ctx) -> dict[Malformed, int]:
        return {r: ctx.get(self.dut.malformed_counts[r]) for r in Malformed}

    async def request(self, ctx, vf: int, state: S) -> None:
        dut = self.dut
        ctx.set(dut.ctl_vf, vf)
        ctx.set(dut.ctl_state, int(state))
        ctx.set(dut.ctl_state_we, 1)
        await ctx.tick()
        ctx.set(dut.ctl_state_we, 0)


def _expected_counts(reasons: list[str], unexpected: int) -> dict[Malformed, int]:
    counts = {r: 0 for r in Malformed}
    for name in reasons:
        counts[Malformed[name]] += 1
    counts[Malformed.UNEXPECTED] += unexpected
    counts[Malformed.NONE] = sum(counts.values())
    return counts


def _chunks(image: list[int], size: int) -> list[Message]:
    return [Message(MsgType.STATE_DATA, 0, offset, payload=image[offset:offset + size])
            for offset in range(0, len(image), size)]


def test_peer_configuration_is_the_vectors_receiver():
    assert (PEER.n_vfs, PEER.max_chunk_words) == (VECTOR_N_VFS, VECTOR_MAX_CHUNK)
    assert SystemConfig().max_chunk_words == max(SystemConfig().chunk_words,
                                                 SystemConfig().layout.block_words,
                                                 SystemConfig().layout.meta_words)


def test_target_drops_bad_messages_in_the_middle_of_an_incoming_migration():
    """A target receiving VF 5: after half the image, every malformed vector and a set of
    well-formed messages wrong in this protocol state arrive.  Each is counted under its
    reason; only SWITCHOVER/COMMIT for no migration are answered (ERROR) and a BEGIN while
    busy is refused; no VF's state and no slot's image changes; the migration then
    completes with the image intact."""
    vf, other = 5, 2
    assert vf not in _lost_chunk_vfs() | {other}

    async def scenario(ctx, peer: Peer):
        lay = peer.layout
        image = [peer.rng.getrandbits(32) for _ in range(lay.image_words)]
        chunks = [Message(c.type, vf, c.arg, payload=c.payload) for c in _chunks(image, 16)]
        await peer.send(ctx, Message(MsgType.BEGIN, vf, lay.image_words).to_words())
        (accept,) = await peer.expect(ctx, 1, "MIG_ACCEPT")
        assert accept == Message(MsgType.ACCEPT, vf, 0), accept
        half = len(chunks) // 2
        for chunk in chunks[:half]:
            await peer.send(ctx, chunk.to_words())
        await peer.settle(ctx)
        before = peer.snapshot(ctx)
        assert before["vfs"][vf]["state"] == S.RESUMING
        partial = [0] * lay.image_words
        for chunk in chunks[:half]:
            partial[chunk.arg:chunk.arg + len(chunk.payload)] = chunk.payload
        assert before["digests"][0] == image_digest(partial)
        assert peer.counts(ctx) == _expected_counts([], 0)

        junk = [peer.rng.getrandbits(32) for _ in range(8)]
        unexpected = [  # (message, the engine's answer)
            (Message(MsgType.STATE_DATA, other, 0, payload=junk), None),
            (Message(MsgType.ROUND_END, other, 1, payload=[3]), None),
            (Message(MsgType.SWITCHOVER, other, image_digest(image)),
             Message(MsgType.ERROR, other, 0, Reason.PROTOCOL)),
            (Message(MsgType.COMMIT, other),
             Message(MsgType.ERROR, other, 0, Reason.PROTOCOL)),
            (Message(MsgType.ERROR, vf, 0, Reason.PROTOCOL), None),
            (Message(MsgType.ACCEPT, vf, 1), None),
            (Message(MsgType.REJECT, vf, 0, Reason.NO_SLOT), None),
            (Message(MsgType.COMMIT_ACK, other, 0), None),
        ]
        handled = [  # well formed and right in this state: answered, not counted
            (Message(MsgType.BEGIN, other, lay.image_words),
             Message(MsgType.REJECT, other, 0, Reason.BUSY)),
        ]
        answers = []
        for vector in BAD_VECTORS:
            await peer.send(ctx, [int(w, 16) for w in vector["words"]])
        for message, answer in unexpected + handled:
            await peer.send(ctx, message.to_words())
            await peer.settle(ctx, 12)
            if answer is not None:
                answers.append(answer)
        got = await peer.expect(ctx, 1 + len(answers), "the answers")
        await peer.settle(ctx)
        assert got[1:] == answers and len(peer.received) == 1 + len(answers), got
        assert peer.counts(ctx) == _expected_counts([v["malformed"] for v in BAD_VECTORS],
                                                    len(unexpected))
        assert ctx.get(peer.dut.malformed) == len(BAD_VECTORS) + len(unexpected)
        assert peer.snapshot(ctx) == before, "a dropped message changed a VF or an image"

        for chunk in chunks[half:]:
            await peer.send(ctx, chunk.to_words())
        await peer.send(ctx, Message(MsgType.SWITCHOVER, vf, image_digest(image)).to_words())
        await peer.settle(ctx)
        assert peer.vf_state(ctx, vf)["state"] == S.STOP, "the digest was refused"
        await peer.send(ctx, Message(MsgType.COMMIT, vf).to_words())
        got = await peer.expect(ctx, 2 + len(answers), "COMMIT_ACK")
        assert got[-1] == Message(MsgType.COMMIT_ACK, vf, 0), got[-1]
        await peer.settle(ctx)
        after = peer.vf_state(ctx, vf)
        assert (after["here"], after["state"], after["slot"]) == (1, S.RUNNING, 0), after
        assert ctx.get(peer.dut.digest[0]) == image_digest(image)
        assert ctx.get(peer.dut.malformed) == len(BAD_VECTORS) + len(unexpected)

    Peer(Device.OFFLOAD).run(scenario)


def test_target_refuses_an_image_whose_chunk_was_dropped():
    """A STATE_DATA of the incoming VF with a bad CRC is dropped (nothing written); even when
    the source sends the chunk again and the digest then matches, SWITCHOVER is answered
    ABORT(CRC), as when the DMA finds a bad chunk; the slot is free again afterwards."""
    vf = 1

    async def scenario(ctx, peer: Peer):
        lay = peer.layout
        image = [peer.rng.getrandbits(32) for _ in range(lay.image_words)]
        chunks = [Message(c.type, vf, c.arg, payload=c.payload) for c in _chunks(image, 32)]
        await peer.send(ctx, Message(MsgType.BEGIN, vf, lay.image_words).to_words())
        await peer.expect(ctx, 1, "MIG_ACCEPT")
        bad = chunks[1].to_words()
        bad[HEADER_WORDS + 3] ^= 1 << 9
        assert classify(bad, PEER.n_vfs, PEER.max_chunk_words)[0] == Malformed.CRC
        await peer.send(ctx, bad)
        await peer.settle(ctx)
        assert ctx.get(peer.dut.digest[0]) == zero_image_digest(lay), "a dropped chunk was written"
        assert peer.vf_state(ctx, vf)["state"] == S.RESUMING
        for chunk in chunks:
            await peer.send(ctx, chunk.to_words())
        await peer.send(ctx, Message(MsgType.SWITCHOVER, vf, image_digest(image)).to_words())
        got = await peer.expect(ctx, 2, "the answer to SWITCHOVER")
        assert got[1] == Message(MsgType.ABORT, vf, 0, Reason.CRC), got[1]
        assert ctx.get(peer.dut.digest[0]) == image_digest(image)  # only the verdict differs
        assert peer.counts(ctx) == _expected_counts(["CRC"], 0)
        await peer.send(ctx, Message(MsgType.BEGIN, vf, lay.image_words).to_words())
        got = await peer.expect(ctx, 3, "MIG_ACCEPT after the abort")
        assert got[2] == Message(MsgType.ACCEPT, vf, 0), got[2]

    Peer(Device.OFFLOAD).run(scenario)


def test_source_drops_bad_messages_during_its_precopy():
    """A source in PRE_COPY for VF 0: malformed vectors and messages wrong for a source
    (STATE_DATA to it, a second ACCEPT, REJECT, SWITCHOVER, COMMIT_ACK for another VF,
    ERROR) arrive while it streams.  Each is counted; no VF state or image changes; the
    engine's own stream stays well formed (its ERROR answer is never interleaved with a
    chunk) and carries the image exactly; the pre-copy converges and aborts cleanly."""
    vf = 0

    async def scenario(ctx, peer: Peer):
        lay = peer.layout
        before = peer.snapshot(ctx)
        await peer.request(ctx, vf, S.PRE_COPY)
        (begin,) = await peer.expect(ctx, 1, "MIG_BEGIN")
        assert begin == Message(MsgType.BEGIN, vf, lay.image_words), begin
        await peer.send(ctx, Message(MsgType.ACCEPT, vf, 0).to_words())
        await peer.expect(ctx, 2, "the first chunk")
        junk = [peer.rng.getrandbits(32) for _ in range(16)]
        unexpected = [
            (Message(MsgType.STATE_DATA, vf, 0, payload=junk), None),
            (Message(MsgType.ACCEPT, vf, 1), None),
            (Message(MsgType.REJECT, vf, 0, Reason.BUSY), None),
            (Message(MsgType.SWITCHOVER, vf, 0), Message(MsgType.ERROR, vf, 0, Reason.PROTOCOL)),
            (Message(MsgType.COMMIT_ACK, 3, 0), None),
            (Message(MsgType.ERROR, vf, 0, Reason.PROTOCOL), None),
        ]
        for i, (message, _) in enumerate(unexpected):
            await peer.send(ctx, message.to_words())
            await peer.send(ctx, [int(w, 16) for w in BAD_VECTORS[i * 5]["words"]])
        for _ in range(LIMIT):
            if peer.vf_state(ctx, vf)["state"] == S.PRE_COPY and ctx.get(peer.dut.rd.converged):
                break
            await ctx.tick()
        else:
            raise AssertionError("the pre-copy never converged")
        await peer.settle(ctx)
        now = peer.snapshot(ctx)
        assert now["digests"] == before["digests"], "a dropped message changed an image"
        for v in range(PEER.n_vfs):
            expected = dict(before["vfs"][v])
            if v == vf:
                expected.update(state=S.PRE_COPY, requested=S.PRE_COPY, migrating=1)
            assert now["vfs"][v] == expected, (v, now["vfs"][v])
        reasons = [BAD_VECTORS[i * 5]["malformed"] for i in range(len(unexpected))]
        assert peer.counts(ctx) == _expected_counts(reasons, len(unexpected))

        sent = await peer.expect(ctx, 2, "the pre-copy")
        copy = [0] * lay.image_words
        for message in sent:
            if message.type == MsgType.STATE_DATA:
                copy[message.arg:message.arg + len(message.payload)] = message.payload
        assert image_digest(copy) == now["digests"][0]
        errors = [m for m in sent if m.type == MsgType.ERROR]
        assert errors == [Message(MsgType.ERROR, vf, 0, Reason.PROTOCOL)], errors

        await peer.request(ctx, vf, S.RUNNING)
        count = len(peer.received)
        got = await peer.expect(ctx, count + 1, "ABORT")
        assert got[-1] == Message(MsgType.ABORT, vf, 0, Reason.REQUESTED), got[-1]
        await peer.send(ctx, Message(MsgType.ABORT_ACK, vf).to_words())
        await peer.settle(ctx)
        assert peer.snapshot(ctx) == before
        assert peer.counts(ctx) == _expected_counts(reasons, len(unexpected))

    Peer(Device.HOST).run(scenario)
