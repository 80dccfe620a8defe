"""The self-test's text report: one line per event, hexadecimal fields, out of a UART.

A line is a template such as ``"round {round:4} {verdict} moves {moves:4}\\r\\n"``
compiled into a ROM of characters: a literal, or one hexadecimal digit of a named input
field; ``{pass:TEXT}`` / ``{fail:TEXT}`` print TEXT only when ``passed`` / not ``passed``.
"""

from __future__ import annotations

import re

from amaranth.hdl import Array, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["ReportPrinter", "compile_template"]

LITERAL, HEX = 0, 1
ALWAYS, IF_PASS, IF_FAIL = 0, 1, 2
_FIELD = re.compile(r"\{(\w+):([^}]*)\}")


def compile_template(template: str, fields: dict[str, int]) -> list[tuple[int, int, int, int]]:
    """``(kind, char or field index, nibble, condition)`` per printed character."""
    names = list(fields)
    rows, pos, cond = [], 0, ALWAYS

    def literal(text, condition):
        rows.extend((LITERAL, ord(c), 0, condition) for c in text)

    for match in _FIELD.finditer(template):
        literal(template[pos:match.start()], cond)
        name, arg = match.groups()
        if name in ("pass", "fail"):
            literal(arg, IF_PASS if name == "pass" else IF_FAIL)
        elif name in fields:
            digits = int(arg)
            if not 1 <= digits <= (fields[name] + 3) // 4:
                raise ValueError(f"report field {name}: {digits} digits do not fit "
                                 f"{fields[name]} bits")
            rows.extend((HEX, names.index(name), d, ALWAYS) for d in reversed(range(digits)))
        else:
            raise ValueError(f"report template names {name!r}; fields: {', '.join(names)}")
        pos = match.end()
    literal(template[pos:], cond)
    return rows


class ReportPrinter(wiring.Component):
    """Prints ``template`` once per ``trigger`` pulse (a pulse while printing is dropped),
    with the fields sampled at the pulse.

    Members
    -------
    trigger : In(1)
    passed : In(1)
    <field> : In(bits) for each entry of ``fields``
    text : Out(stream.Signature(8))    characters, to a ``UartTx``
    """

    def __init__(self, template: str, fields: dict[str, int]):
        self.rows = compile_template(template, fields)
        self.fields = fields
        super().__init__({"trigger": In(1), "passed": In(1), "text": Out(stream.Signature(8)),
                          **{name: In(bits) for name, bits in fields.items()}})

    def elaborate(self, platform):
        m = Module()
        row = data.StructLayout({"kind": 1, "value": 8, "nibble": 4, "cond": 2})
        rom = Array(Const({"kind": k, "value": v, "nibble": n, "cond": c}, row)
                    for k, v, n, c in self.rows)
        sampled = [Signal(bits, name=f"sampled_{name}") for name, bits in self.fields.items()]
        passed = Signal()
        index = Signal(range(len(self.rows) + 1), init=len(self.rows))
        cur = rom[index]
        nibbles = Array(Array(s.word_select(i, 4) if 4 * i < len(s) else Const(0, 4)
                              for i in range(16)) for s in sampled)
        digit = nibbles[cur.value][cur.nibble]
        hex_char = Mux(digit < 10, ord("0") + digit, ord("a") - 10 + digit)
        shown = ((cur.cond == ALWAYS) | ((cur.cond == IF_PASS) & passed)
                 | ((cur.cond == IF_FAIL) & ~passed))
        printing = index != len(self.rows)
        m.d.comb += [self.text.valid.eq(printing & shown),
                     self.text.payload.eq(Mux(cur.kind == HEX, hex_char, cur.value))]
        with m.If(printing & (~shown | self.text.ready)):
            m.d.sync += index.eq(index + 1)
        with m.If(~printing & self.trigger):
            m.d.sync += [index.eq(0), passed.eq(self.passed)]
            m.d.sync += [s.eq(getattr(self, name))
                         for s, name in zip(sampled, self.fields, strict=True)]
        return m
