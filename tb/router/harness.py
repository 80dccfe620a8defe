"""``RouterHarness``: the router with per-slot quiesce in front of each device port.

A VFUnit refuses requests for a quiesced slot, so its ``req.ready`` depends on the payload
(docs/design.md). The harness reproduces that on every device port — ``dev_req_<d>`` is offered
outside only while its slot is not quiesced, and the router sees ``ready`` low for a
quiesced slot — so the tests exercise the router against a payload-dependent ready, and the
testbench still sees plain streams.
"""

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from hdl.router import Router
from tb.common.harness import connect_inner


class RouterHarness(wiring.Component):
    """``Router(n_vfs, **kwargs)`` plus ``quiesce_<d>``.

    Members
    -------
    every member of the router, same name, shape and behaviour (see hdl/router.py), except:
    dev_req_<d> : valid is the router's valid while ``quiesce_<d>`` has the payload's slot
        bit clear; the router sees ``ready`` only then.
    quiesce_<d> : In(slots_per_device[d])
        Per slot of device ``d``: refuse requests for it (combinational, no latency).
    """

    def __init__(self, n_vfs: int, **kwargs):
        self.router = router = Router(n_vfs, **kwargs)
        members = dict(router.signature.members.items())
        for d, slots in enumerate(router.slots_per_device):
            members[f"quiesce_{d}"] = In(slots)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.router = router = self.router
        names = list(router.signature.members)
        connect_inner(m, self, router, {n: n for n in names if not n.startswith("dev_req_")})
        for name in (n for n in names if n.startswith("dev_req_")):
            outer, inner = getattr(self, name), getattr(router, name)
            quiesce = getattr(self, f"quiesce_{name.rsplit('_', 1)[1]}")
            blocked = quiesce.bit_select(inner.payload.slot, 1)
            m.d.comb += [outer.payload.eq(inner.payload),
                         outer.valid.eq(inner.valid & ~blocked),
                         inner.ready.eq(outer.ready & ~blocked)]
        return m
