"""model/irq_remap.py: parameters, handle geometry, entry format, and the remapping rules."""

from __future__ import annotations

import random

import pytest

from model.irq_remap import (
    MAX_TABLE_ENTRIES,
    FaultReason,
    FaultRecord,
    GoldenIrqRemap,
    Outcome,
    RemapCommand,
    RemapEntry,
    RemapOp,
    RemapParams,
    ValidationMode,
    entry_fields,
    handle_of_address,
    msi_address,
)
from tests.checks import assert_refused

P = RemapParams(n_vfs=3, n_vectors=4, vm_bits=4, guest_vector_bits=8, fault_depth=2)
HOST, OFFLOAD = 0, 1


def entry(vm: int = 1, gv: int = 0x40, src=(HOST, 0), *, mask: bool = False,
          mode: ValidationMode = ValidationMode.EXACT) -> RemapEntry:
    return RemapEntry(True, mask, mode, src[0], src[1], vm, gv)


def programmed(params: RemapParams = P) -> GoldenIrqRemap:
    """Every entry present, EXACT, VF v at host slot v, VM v, guest vector 0x20*v + vector."""
    m = GoldenIrqRemap(params)
    for vf in range(params.n_vfs):
        for vector in range(params.n_vectors):
            assert m.command(RemapCommand.write(vf, vector, entry(
                vf, 0x20 * vf + vector, (HOST, vf)))).accepted
    return m


def raise_(m: GoldenIrqRemap, vf: int, vector: int, src=None):
    src = (HOST, vf) if src is None else src
    return m.raise_interrupt(m.params.handle(vf, vector), *src)


# ---------------------------------------------------------------- parameters and geometry
@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"n_vfs": 0, "n_vectors": 4}, ValueError, "IrqRemap n_vfs must be between 1 and 255, not 0"),
    ({"n_vfs": 256, "n_vectors": 4}, ValueError,
     "IrqRemap n_vfs must be between 1 and 255, not 256"),
    ({"n_vfs": 2.0, "n_vectors": 4}, TypeError, "IrqRemap n_vfs must be an integer, not 2.0"),
    ({"n_vfs": True, "n_vectors": 4}, TypeError, "IrqRemap n_vfs must be an integer, not True"),
    ({"n_vfs": 2, "n_vectors": 2049}, ValueError,
     "IrqRemap n_vectors must be between 1 and 2048, not 2049"),
    ({"n_vfs": 2, "n_vectors": 4, "vm_bits": 0}, ValueError,
     "IrqRemap vm_bits must be between 1 and 16, not 0"),
    ({"n_vfs": 2, "n_vectors": 4, "guest_vector_bits": 17}, ValueError,
     "IrqRemap guest_vector_bits must be between 1 and 16, not 17"),
    ({"n_vfs": 2, "n_vectors": 4, "fault_depth": 0}, ValueError,
     "IrqRemap fault_depth must be between 1 and 256, not 0"),
    ({"n_vfs": 3, "n_vectors": 2048}, ValueError,
     "IrqRemap table must have at most 4096 entries (n_vfs * vector_stride = 3 * 2048), "
     "not 6144"),
])
def test_parameters_are_checked(kwargs, error, message):
    assert_refused(error, message, RemapParams, **kwargs)


def test_handle_geometry():
    p = RemapParams(n_vfs=3, n_vectors=3)
    assert (p.vf_bits, p.vector_bits, p.vector_stride, p.handle_bits) == (2, 2, 4, 4)
    assert p.n_handles == 12
    assert p.handle(2, 1) == 9 and p.split(9) == (2, 1)
    assert p.split(15) == (3, 3) and not p.valid(3, 3) and not p.valid(0, 3)
    # With a power-of-two vector count the handle is vf * n_vectors + vector.
    q = RemapParams(n_vfs=8, n_vectors=4)
    assert all(q.handle(vf, v) == vf * 4 + v for vf in range(8) for v in range(4))
    assert RemapParams(n_vfs=255, n_vectors=16).n_handles <= MAX_TABLE_ENTRIES
    with pytest.raises(ValueError):
        p.split(16)
    with pytest.raises(ValueError):
        p.handle(0, 4)


def test_entry_format_round_trips_and_is_lsb_first():
    fields = entry_fields(P)
    assert list(fields) == ["present", "mask", "mode", "source_device", "source_slot", "vm",
                            "guest_vector"]
    assert sum(fields.values()) == 1 + 1 + 1 + 1 + 8 + 4 + 8
    e = RemapEntry(True, False, ValidationMode.EXACT, 1, 0xA5, 0x9, 0x3C)
    word = e.pack(P)
    assert word & 1 and not word >> 1 & 1 and word >> 2 & 1 and word >> 3 & 1
    assert word >> 4 & 0xFF == 0xA5 and word >> 12 & 0xF == 0x9 and word >> 16 == 0x3C
    rng = random.Random(1)
    for _ in range(200):
        e = RemapEntry(bool(rng.getrandbits(1)), bool(rng.getrandbits(1)),
                       ValidationMode(rng.getrandbits(1)), rng.getrandbits(1), rng.getrandbits(8),
                       rng.getrandbits(4), rng.getrandbits(8))
        assert RemapEntry.unpack(P, e.pack(P)) == e
        assert RemapEntry.from_dict(e.to_dict()) == e
    with pytest.raises(ValueError, match="vm=16 does not fit 4 bits"):
        RemapEntry(True, vm=16).pack(P)


def test_msi_address_encoding_is_vtd_remappable_format():
    assert msi_address(0) == 0xFEE0_0010
    assert msi_address(1) == 0xFEE0_0030
    assert msi_address(0x8000) == 0xFEE0_0014
    for handle in (0, 1, 5, 0x7FFF, 0x8000, 0xFFFF, 0x1234):
        assert handle_of_address(msi_address(handle)) == handle
    with pytest.raises(ValueError):
        msi_address(1 << 16)


# ---------------------------------------------------------------- rules
def test_delivery_uses_the_entry_destination():
    m = programmed()
    r = raise_(m, 2, 3)
    assert r.outcome == Outcome.DELIVERED
    assert r.delivery.message == (2, 0x43, 2, 3) and r.delivery.raises == (0,)
    assert not r.delivery.replay


def test_not_present_and_out_of_range_handles_are_blocked_and_recorded():
    m = GoldenIrqRemap(P)
    r = raise_(m, 1, 2)
    assert r.outcome == Outcome.BLOCKED and r.fault_recorded
    assert r.fault == FaultRecord(HOST, 1, 1, 2, FaultReason.NOT_PRESENT)
    # vf 3 does not exist (3 VFs): still a handle value, still NOT_PRESENT.
    r = m.raise_interrupt(P.handle(3, 0), OFFLOAD, 7)
    assert r.fault == FaultRecord(OFFLOAD, 7, 3, 0, FaultReason.NOT_PRESENT)
    assert m.blocked == 2 and m.delivered == 0
    assert m.pop_fault().vf == 1 and m.pop_fault().vf == 3 and m.pop_fault() is None


def test_source_id_check_exact_and_off():
    m = programmed()
    spoof = raise_(m, 1, 0, src=(HOST, 0))          # VF 0's slot names VF 1's entry
    assert spoof.outcome == Outcome.BLOCKED
    assert spoof.fault == FaultRecord(HOST, 0, 1, 0, FaultReason.SOURCE_MISMATCH)
    other_device = raise_(m, 1, 0, src=(OFFLOAD, 1))  # same slot number, other device
    assert other_device.fault.reason == FaultReason.SOURCE_MISMATCH
    m.command(RemapCommand.write(1, 0, entry(5, 6, (HOST, 1), mode=ValidationMode.OFF)))
    assert raise_(m, 1, 0, src=(OFFLOAD, 9)).outcome == Outcome.DELIVERED
    assert m.blocked == 2


def test_fault_fifo_drops_when_full_and_counts():
    m = GoldenIrqRemap(P)   # fault_depth 2
    results = [raise_(m, 0, v) for v in range(4)]
    assert [r.fault_recorded for r in results] == [True, True, False, False]
    assert m.blocked == 4 and m.fault_dropped == 2 and len(m.faults) == 2
    m.pop_fault()
    assert raise_(m, 0, 0).fault_recorded


def test_masked_vector_goes_pending_coalesces_and_is_sent_once_on_unmask():
    m = programmed()
    m.command(RemapCommand.write(0, 1, entry(0, 0x21, (HOST, 0), mask=True)))
    assert raise_(m, 0, 1).outcome == Outcome.PENDING
    assert raise_(m, 0, 1).outcome == Outcome.COALESCED
    assert raise_(m, 0, 1).outcome == Outcome.COALESCED
    assert m.command(RemapCommand.read(0, 1)).read == (entry(0, 0x21, (HOST, 0), mask=True),
                                                     True)
    # A write that keeps the mask does not deliver; the unmask delivers once, with the
    # destination written by the unmask.
    assert m.command(RemapCommand.write(0, 1, entry(0, 0x22, (HOST, 0), mask=True))
                     ).deliveries == ()
    result = m.command(RemapCommand.write(0, 1, entry(3, 0x99, (HOST, 0))))
    assert [d.message for d in result.deliveries] == [(3, 0x99, 0, 1)]
    assert result.deliveries[0].raises == (0, 1, 2) and result.deliveries[0].replay
    assert m.command(RemapCommand.write(0, 1, entry(3, 0x99, (HOST, 0)))).deliveries == ()
    assert not m.is_pending(0, 1) and m.coalesced == 2 and m.delivered == 1


def test_blocked_interrupts_never_set_pending_bits():
    m = programmed()
    m.command(RemapCommand.hold(1))
    assert raise_(m, 1, 0, src=(HOST, 2)).outcome == Outcome.BLOCKED
    assert not m.is_pending(1, 0)
    assert m.command(RemapCommand.release(1)).deliveries == ()


def test_hold_retarget_release_replays_each_pending_vector_once_in_order():
    m = programmed()
    assert m.command(RemapCommand.hold(1)).accepted and m.held[1]
    for vector in (3, 0, 3, 2):
        assert raise_(m, 1, vector).outcome in (Outcome.PENDING, Outcome.COALESCED)
    assert raise_(m, 0, 0).outcome == Outcome.DELIVERED     # other VFs are not held
    m.command(RemapCommand.write(1, 2, entry(1, 0x42, (HOST, 1), mask=True)))  # stays pending
    assert m.command(RemapCommand.retarget(1, OFFLOAD, 3)).accepted
    assert m.entry(1, 0).source == (OFFLOAD, 3) and m.entry(1, 2).source == (OFFLOAD, 3)
    # The old location is now a spoofer; the new one goes pending while held.
    assert raise_(m, 1, 1).fault.reason == FaultReason.SOURCE_MISMATCH
    assert raise_(m, 1, 1, src=(OFFLOAD, 3)).outcome == Outcome.PENDING
    result = m.command(RemapCommand.release(1))
    assert [d.key for d in result.deliveries] == [(1, 0), (1, 1), (1, 3)]
    assert [d.raises for d in result.deliveries] == [(1,), (6,), (0, 2)]
    assert m.is_pending(1, 2) and not m.held[1]
    assert raise_(m, 1, 0, src=(OFFLOAD, 3)).outcome == Outcome.DELIVERED
    assert m.command(RemapCommand.release(1)).deliveries == ()   # nothing left to replay
    unmask = m.command(RemapCommand.write(1, 2, entry(1, 0x42, (OFFLOAD, 3))))
    assert [d.key for d in unmask.deliveries] == [(1, 2)]


def test_unmask_while_held_waits_for_release():
    m = programmed()
    m.command(RemapCommand.write(2, 0, entry(2, 0x40, (HOST, 2), mask=True)))
    raise_(m, 2, 0)
    m.command(RemapCommand.hold(2))
    assert m.command(RemapCommand.write(2, 0, entry(2, 0x40, (HOST, 2)))).deliveries == ()
    assert [d.key for d in m.command(RemapCommand.release(2)).deliveries] == [(2, 0)]


def test_pending_survives_a_not_present_write_and_is_sent_when_present_again():
    m = programmed()
    m.command(RemapCommand.write(0, 0, entry(0, 0x20, (HOST, 0), mask=True)))
    raise_(m, 0, 0)
    assert m.command(RemapCommand.write(0, 0, RemapEntry(False, False, ValidationMode.EXACT, 1,
                                                         5, 3, 3))).deliveries == ()
    assert m.command(RemapCommand.read(0, 0)).read == (RemapEntry(), True)  # reads as zero
    assert raise_(m, 0, 0).outcome == Outcome.BLOCKED
    back = m.command(RemapCommand.write(0, 0, entry(7, 0x77, (HOST, 0))))
    assert [d.message for d in back.deliveries] == [(7, 0x77, 0, 0)]


def test_retarget_leaves_not_present_entries_empty():
    m = GoldenIrqRemap(P)
    m.command(RemapCommand.write(0, 1, entry(1, 2, (HOST, 0))))
    m.command(RemapCommand.retarget(0, OFFLOAD, 4))
    assert m.entry(0, 0) == RemapEntry() and m.entry(0, 1).source == (OFFLOAD, 4)


@pytest.mark.parametrize("cmd", [
    RemapCommand.write(3, 0, RemapEntry()), RemapCommand.read(0, 4), RemapCommand.hold(3),
    RemapCommand.release(5), RemapCommand.retarget(3, 0, 0), RemapCommand(6, 0, 0),
])
def test_invalid_commands_are_refused_and_counted(cmd):
    m = programmed()
    before = (list(m.entries), list(m.held))
    result = m.command(cmd)
    assert not result.accepted and m.ctl_errors == 1
    assert (list(m.entries), list(m.held)) == before


def test_random_events_keep_the_invariants():
    """No pending entry is ever deliverable; every raise is delivered once, blocked or
    pending; counters add up."""
    rng = random.Random(7)
    p = RemapParams(n_vfs=3, n_vectors=3, vm_bits=3, guest_vector_bits=4, fault_depth=3)
    m = GoldenIrqRemap(p)
    answered: dict[int, int] = {}
    blocked = 0
    for step in range(5000):
        if rng.random() < 0.2:
            op = rng.choice(list(RemapOp))
            vf, vector = rng.randrange(p.n_vfs), rng.randrange(p.n_vectors)
            e = RemapEntry(rng.random() < 0.9, rng.random() < 0.3,
                           ValidationMode(rng.getrandbits(1)), rng.getrandbits(1),
                           rng.randrange(4), rng.randrange(8), rng.randrange(16))
            result = m.command(RemapCommand(op, vf, vector, e))
            deliveries = result.deliveries
        else:
            handle = rng.randrange(1 << p.handle_bits)
            r = m.raise_interrupt(handle, rng.getrandbits(1), rng.randrange(4), step)
            deliveries = (r.delivery,) if r.delivery else ()
            blocked += r.outcome == Outcome.BLOCKED
        for d in deliveries:
            entry_now = m.entry(d.vf, d.vector)
            assert entry_now.present and not entry_now.mask and not m.held[d.vf]
            assert (d.vm, d.guest_vector) == (entry_now.vm, entry_now.guest_vector)
            for rid in d.raises:
                answered[rid] = answered.get(rid, 0) + 1
        for handle in range(p.n_handles):
            assert not (m.pending[handle] and m.deliverable(handle))
        if rng.random() < 0.3:
            m.pop_fault()
    assert set(answered.values()) == {1}
    assert len(answered) + blocked + len(m.pending_raise_ids()) == m.raised
    assert m.blocked == blocked and m.delivered >= m.replayed > 0 and m.coalesced > 0
