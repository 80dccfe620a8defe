"""Bench harness tops: the ports of an inner component exposed on the harness unchanged."""

from __future__ import annotations

from amaranth.hdl import Module
from amaranth.lib import wiring


def inner_members(inner: wiring.Component, names: dict[str, str]) -> dict[str, wiring.Member]:
    """The members of ``inner`` a harness exposes: harness name -> ``inner``'s member of
    the name it maps to (same flow and shape, so the harness' signature is the inner one's)."""
    return {outer: inner.signature.members[name] for outer, name in names.items()}


def connect_inner(m: Module, harness: wiring.Component, inner: wiring.Component,
                  names: dict[str, str]) -> None:
    """Wire the harness ports of ``inner_members(inner, names)`` to ``inner``'s: interfaces
    with ``wiring.connect``, plain ports by their flow."""
    for outer, name in names.items():
        port, inner_port = getattr(harness, outer), getattr(inner, name)
        member = inner.signature.members[name]
        if member.is_signature:
            wiring.connect(m, wiring.flipped(port), inner_port)
        elif member.flow == wiring.In:
            m.d.comb += inner_port.eq(port)
        else:
            m.d.comb += port.eq(inner_port)
