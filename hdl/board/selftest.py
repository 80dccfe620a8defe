"""The on-chip self-test: the whole system on one chip, driven and checked by hardware.

Both devices, the link closed inside the chip through two fault channels, a traffic
generator that checks every answer (hdl/board/traffic.py) and a migration sequencer that
moves VFs through the control port as the VMM does (hdl/board/sequencer.py). A *round* is
``2 * n_vfs`` moves; before every move the traffic must have completed two passes since the
last one, so every checked word of every image is read back after each move. Odd rounds run
with the link faults on (bit errors and dropped flits: the link must replay, nothing may be
lost). After each round, and once on a failure, a text line goes out of the UART::

    vfmig self-test round 0001 PASS moves 0002 requests 00001a2b faults 00000000 ...

LEDs: 0 heartbeat, 1 passed (a round done, no failure), 2 failed, 3 link faults on,
7..4 the low bits of the moves committed.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import Out

from model.common import check_int
from model.config import SystemConfig
from model.link import FaultConfig

from ..fault_channel import FaultChannel, channel_settings
from ..system.top import System
from .axil_master import AxiLiteMaster
from .report import ReportPrinter
from .sequencer import MigrationSequencer
from .traffic import TrafficChecker
from .uart import UartTx

__all__ = ["SELFTEST_FAULTS", "SelfTest"]

#: The link faults of odd rounds: bit errors and dropped flits the link must recover from.
SELFTEST_FAULTS = FaultConfig(ber=1e-4, drop_rate=5e-3)
PASSES_PER_MOVE = 2
REPORT = ("vfmig self-test round {round:4} {pass:PASS}{fail:FAIL} moves {moves:4} "
          "requests {requests:8} faults {faults:8} sequencer {seq_step:2}/{seq_vf:2}/"
          "{seq_code:8} traffic {tr_op:1}/{tr_vf:2}/{tr_word:4}\r\n")


class SelfTest(wiring.Component):
    """The system of ``config`` with its self-test, board-independent.

    Parameters
    ----------
    config : SystemConfig
    clk_hz, baud : int
        The clock and the UART's bit rate (their ratio is the UART divisor).
    words : int or None
        Pattern words checked per VF (``TrafficChecker``).
    poll_limit : int
        Register reads a migration step may poll before the self-test fails.
    _fault_inject : None or a ``System`` fault
        A deliberate design fault the self-test must catch.

    Members
    -------
    leds : Out(8)
    uart_tx : Out(1)
    rounds : Out(16)       rounds completed
    passed, failed : Out(1)
    """

    def __init__(self, config: SystemConfig, *, clk_hz: int, baud: int = 115_200,
                 words: int | None = None, poll_limit: int = 1 << 20,
                 _fault_inject: str | None = None):
        check_int("SelfTest", "clk_hz", clk_hz, 1_000_000)
        check_int("SelfTest", "baud", baud, 300, clk_hz // 4)
        self.config, self.clk_hz, self.baud = config, clk_hz, baud
        self.words, self.poll_limit, self.fault_inject = words, poll_limit, _fault_inject
        super().__init__({"leds": Out(8), "uart_tx": Out(1), "rounds": Out(16),
                          "passed": Out(1), "failed": Out(1)})

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        m.submodules.system = system = System(cfg, _fault_inject=self.fault_inject)
        m.submodules.traffic = traffic = TrafficChecker(cfg, words=self.words)
        m.submodules.master = master = AxiLiteMaster()
        m.submodules.sequencer = seq = MigrationSequencer(cfg.n_vfs, self.poll_limit)
        wiring.connect(m, traffic.req, system.req)
        wiring.connect(m, system.resp, traffic.resp)
        wiring.connect(m, master.axil, system.axil)
        wiring.connect(m, seq.regs_cmd, master.cmd)
        wiring.connect(m, master.result, seq.regs_result)
        m.d.comb += system.irq.ready.eq(1)   # interrupts are the remapper's tests' business
        faults_on = self.rounds[0]
        injected = self._close_link(m, system, faults_on)
        round_done = self._pace(m, traffic, seq)
        m.d.comb += [self.failed.eq(traffic.failed | seq.failed),
                     self.passed.eq((self.rounds != 0) & ~self.failed)]
        self._report(m, traffic, seq, injected, round_done)
        half_second = self.clk_hz // 2
        heartbeat = Signal(range(half_second))
        beat = Signal()
        m.d.sync += heartbeat.eq(heartbeat + 1)
        with m.If(heartbeat == half_second - 1):
            m.d.sync += [heartbeat.eq(0), beat.eq(~beat)]
        m.d.comb += self.leds.eq(Cat(beat, self.passed, self.failed, faults_on, seq.moves[:4]))
        return m

    def _close_link(self, m, system, faults_on):
        """Each wire through a fault channel whose faults are on while ``faults_on``;
        returns the flits they corrupted or dropped."""
        width = self.config.link_width
        settings = channel_settings(SELFTEST_FAULTS, width + 1, windows=1)
        injected = Signal(32)
        counts = []
        for name, seed in (("h2o", 1), ("o2h", 2)):
            channel = FaultChannel(width, seed=seed, kinds=("ber", "drop"), windows=1)
            m.submodules[f"{name}_wire"] = channel
            tx, rx = getattr(system, f"{name}_tx"), getattr(system, f"{name}_rx")
            m.d.comb += [channel.tx_valid.eq(tx.valid), channel.tx_sop.eq(tx.sop),
                         channel.tx_flit.eq(tx.flit), rx.valid.eq(channel.rx_valid),
                         rx.sop.eq(channel.rx_sop), rx.flit.eq(channel.rx_flit),
                         channel.arm.eq(1)]
            for port in ("thr_ber", "thr_drop"):
                m.d.comb += getattr(channel, port).eq(faults_on * settings[port])
            m.d.comb += channel.burst_bits.eq(1)
            counts += [channel.count_flipped_flits, channel.count_dropped]
        m.d.comb += injected.eq(sum(counts))
        return injected

    def _pace(self, m, traffic, seq):
        """A move may start after ``PASSES_PER_MOVE`` passes since the last one ended;
        returns the pulse that ends a round."""
        since = Signal(range(PASSES_PER_MOVE + 1))
        round_moves = Signal(range(2 * self.config.n_vfs))
        round_done = Signal()
        with m.If(seq.moved):
            m.d.sync += [since.eq(0), round_moves.eq(round_moves + 1)]
            with m.If(round_moves == 2 * self.config.n_vfs - 1):
                m.d.sync += [round_moves.eq(0), self.rounds.eq(self.rounds + 1)]
                m.d.comb += round_done.eq(1)
        with m.Elif(traffic.pass_done & (since != PASSES_PER_MOVE)):
            m.d.sync += since.eq(since + 1)
        m.d.comb += seq.go.eq((since == PASSES_PER_MOVE) & ~traffic.failed)
        return round_done

    def _report(self, m, traffic, seq, injected, round_done):
        fields = {"round": 16, "moves": 16, "requests": 32, "faults": 32, "seq_step": 8,
                  "seq_vf": 8, "seq_code": 32, "tr_op": 2, "tr_vf": 8, "tr_word": 16}
        m.submodules.report = report = ReportPrinter(REPORT, fields)
        m.submodules.uart = uart = UartTx(self.clk_hz // self.baud)
        wiring.connect(m, report.text, uart.data)
        failed_d = Signal()
        m.d.sync += failed_d.eq(self.failed)
        values = {"round": self.rounds, "moves": seq.moves, "requests": traffic.requests,
                  "faults": injected, "seq_step": seq.fail_step, "seq_vf": seq.fail_vf,
                  "seq_code": seq.fail_code, "tr_op": traffic.fail_op, "tr_vf": traffic.fail_vf,
                  "tr_word": traffic.fail_word}
        m.d.comb += [getattr(report, name).eq(value) for name, value in values.items()]
        # round_done is registered a cycle late into ``rounds``: print the cycle after.
        round_d = Signal()
        m.d.sync += round_d.eq(round_done)
        m.d.comb += [report.trigger.eq(round_d | (self.failed & ~failed_d)),
                     report.passed.eq(~self.failed), self.uart_tx.eq(uart.tx)]
