"""The self-test's traffic generator and response checker: VM requests to every VF, each
answer compared with what the VF must hold.

Per VF the image's first memory word is a counter and the next ``words`` are pattern words.
A *pass* walks the pattern words; for each word it sends, to every VF in turn, three
requests: ADD 1 to the counter, READ the word, WRITE it with this pass's pattern. So

- the ADD's answer must be the VF's count of ADDs so far (a lost, repeated or reordered
  request, or a counter block the migration did not copy, shows as a wrong count);
- the READ must return the previous pass's pattern (zero in pass 0: the reset sweep), so
  every checked word of every image is read back once per pass, wherever the VF lives;
- the WRITE changes every checked word each pass, so pre-copy rounds see dirty blocks.

Answers are matched to requests by tag (answers of different VFs may pass each other);
at most ``2**outstanding_bits`` requests are in flight. Any error response, wrong VF or
wrong data sets ``failed`` (sticky) with the request's op, VF and word latched.
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from model.common import bits_for, check_int
from model.config import SystemConfig
from model.state import Op

from ..formats import system_request_layout, system_response_layout

__all__ = ["TrafficChecker", "pattern"]

PATTERN_SALT = 0xA5C3_0000


def pattern(word, vf, epoch, addr_bits: int, vf_bits: int):
    """The value pass ``epoch`` writes to ``word`` of ``vf``: distinct for every (word, vf)
    and every epoch modulo ``2**(32 - addr_bits - vf_bits)``."""
    return Cat(word[:addr_bits], vf[:vf_bits], epoch)[:32] ^ PATTERN_SALT


class TrafficChecker(wiring.Component):
    """Requests to every VF of ``config``, every answer checked.

    Parameters
    ----------
    config : SystemConfig
    words : int or None
        Pattern words checked per VF (default: every memory word after the counter).
    outstanding_bits : int
        log2 of the requests in flight at most (at most ``config.tag_bits``).

    Members
    -------
    req : Out(stream of system_request_layout); resp : In(stream of system_response_layout)
    passes : Out(16)      completed passes (every checked word of every VF read back once)
    pass_done : Out(1)    pulse: the last request of a pass was sent this cycle
    requests : Out(32)    requests sent
    failed : Out(1)       sticky; ``fail_op``, ``fail_vf``, ``fail_word`` name the request
    """

    def __init__(self, config: SystemConfig, words: int | None = None,
                 outstanding_bits: int = 3):
        lay = config.layout
        self.config = config
        self.words = lay.mem_words - 1 if words is None else words
        check_int("TrafficChecker", "words", self.words, 1, lay.mem_words - 1)
        check_int("TrafficChecker", "outstanding_bits", outstanding_bits, 1, config.tag_bits)
        self.outstanding_bits = outstanding_bits
        self.vf_bits = bits_for(config.n_vfs)
        super().__init__({
            "req": Out(stream.Signature(system_request_layout(config))),
            "resp": In(stream.Signature(system_response_layout(config))),
            "passes": Out(16), "pass_done": Out(1), "requests": Out(32), "failed": Out(1),
            "fail_op": Out(2), "fail_vf": Out(8), "fail_word": Out(16),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, lay = self.config, self.config.layout
        entry = data.StructLayout({"busy": 1, "vf": self.vf_bits, "op": 2, "word": 16,
                                   "check": 1, "expect": 32})
        table = Array(Signal(entry, name=f"outstanding_{i}")
                      for i in range(1 << self.outstanding_bits))
        counts = Array(Signal(32, name=f"adds_{vf}") for vf in range(cfg.n_vfs))
        vf = Signal(range(cfg.n_vfs))
        word = Signal(range(self.words))
        kind = Signal(range(3))              # 0 ADD the counter, 1 READ the word, 2 WRITE it
        epoch = Signal(32 - lay.addr_bits - self.vf_bits)
        tag = Signal(self.outstanding_bits)
        addr = lay.mem_base + 1 + word
        old = Mux(epoch == 0, 0, pattern(addr, vf, epoch - 1, lay.addr_bits, self.vf_bits))
        new = pattern(addr, vf, epoch, lay.addr_bits, self.vf_bits)
        op = Array([Const(int(Op.ADD), 2), Const(int(Op.READ), 2), Const(int(Op.WRITE), 2)])[kind]
        req = self.req.payload
        m.d.comb += [req.vf.eq(vf), req.op.eq(op), req.tag.eq(tag),
                     req.addr.eq(Mux(kind == 0, lay.mem_base, addr)),
                     req.data.eq(Mux(kind == 0, 1, Mux(kind == 2, new, 0))),
                     self.req.valid.eq(~table[tag].busy & ~self.failed)]
        with m.If(self.req.valid & self.req.ready):
            fields = {"busy": 1, "vf": vf, "op": op, "word": req.addr, "check": kind != 2,
                      "expect": Mux(kind == 0, counts[vf] + 1, old)}
            m.d.sync += [getattr(table[tag], name).eq(value) for name, value in fields.items()]
            m.d.sync += [tag.eq(tag + 1), self.requests.eq(self.requests + 1)]
            with m.If(kind == 0):
                m.d.sync += counts[vf].eq(counts[vf] + 1)
            self._advance(m, kind, vf, word, epoch)
        self._check(m, table)
        return m

    def _advance(self, m, kind, vf, word, epoch):
        """Next request: ADD, READ, WRITE for one VF, then the next VF, then the next word."""
        last_vf, last_word = self.config.n_vfs - 1, self.words - 1
        m.d.sync += kind.eq(Mux(kind == 2, 0, kind + 1))
        with m.If(kind == 2):
            m.d.sync += vf.eq(Mux(vf == last_vf, 0, vf + 1))
            with m.If(vf == last_vf):
                m.d.sync += word.eq(Mux(word == last_word, 0, word + 1))
                with m.If(word == last_word):
                    m.d.comb += self.pass_done.eq(1)
                    m.d.sync += [epoch.eq(epoch + 1), self.passes.eq(self.passes + 1)]

    def _check(self, m, table):
        """Every answer: its tag's entry must be busy, for the same VF, without error, and
        hold the expected data where there is one."""
        resp = self.resp.payload
        entry = table[resp.tag[:self.outstanding_bits]]
        wrong = (~entry.busy | (resp.vf != entry.vf) | resp.error
                 | (entry.check & (resp.data != entry.expect)))
        m.d.comb += self.resp.ready.eq(1)
        with m.If(self.resp.valid):
            m.d.sync += entry.busy.eq(0)
            with m.If(wrong & ~self.failed):
                m.d.sync += [self.failed.eq(1), self.fail_op.eq(entry.op),
                             self.fail_vf.eq(resp.vf), self.fail_word.eq(entry.word)]
