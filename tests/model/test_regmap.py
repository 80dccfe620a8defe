"""The control-plane register map (model/regmap.py) and its generated doc."""

from __future__ import annotations

from pathlib import Path

import pytest

from model import regmap
from model.protocol import MAX_VFS, Reason
from model.regmap import (
    ADDR_BITS,
    GLOBAL,
    GLOBAL_REGS,
    VF,
    VF_BASE,
    VF_REGS,
    VF_STRIDE,
    ErrorCode,
    markdown,
    vf_reg,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("regs", [GLOBAL_REGS, VF_REGS], ids=["global", "vf"])
def test_offsets_unique_aligned_and_named_once(regs):
    offsets = [r.offset for r in regs]
    assert len(set(offsets)) == len(offsets), "two registers share an offset"
    assert all(o % 4 == 0 for o in offsets)
    names = [r.name for r in regs]
    assert len(set(names)) == len(names)
    assert all(r.access in ("RO", "RW", "WO") and r.doc for r in regs)


def test_global_registers_end_before_the_vf_blocks():
    assert max(GLOBAL.values()) + 4 <= VF_BASE


def test_vf_registers_fit_in_their_stride():
    assert VF_STRIDE & (VF_STRIDE - 1) == 0 and VF_BASE % VF_STRIDE == 0
    assert all(0 <= o and o + 4 <= VF_STRIDE for o in VF.values())


def test_no_global_and_vf_register_overlap():
    n_vfs = 8
    addresses = list(GLOBAL.values()) + [vf_reg(v, n) for v in range(n_vfs) for n in VF]
    assert len(set(addresses)) == len(addresses)


def test_vf_reg_arithmetic():
    assert vf_reg(0, "DEVICE_STATE") == VF_BASE
    assert vf_reg(3, "STATUS") == VF_BASE + 3 * VF_STRIDE + VF["STATUS"]


def test_every_vf_is_addressable():
    """The last VF the protocol can name still has its registers on the bus."""
    last = max(vf_reg(MAX_VFS - 1, name) for name in VF)
    assert last + 4 <= 1 << ADDR_BITS, (
        f"VF {MAX_VFS - 1}'s registers end at {last + 4:#x}, beyond the "
        f"{ADDR_BITS}-bit register bus")


def test_status_fields_hold_their_codes():
    lsb, width = regmap.STATUS_ERROR
    assert max(ErrorCode) < 1 << width
    lsb_r, width_r = regmap.STATUS_REASON
    assert max(Reason) < 1 << width_r
    fields = [set(range(lsb, lsb + width)), set(range(lsb_r, lsb_r + width_r)),
              {regmap.STATUS_BUSY}, {regmap.STATUS_CONVERGED}, {regmap.STATUS_READY_TO_COMMIT}]
    assert sum(len(f) for f in fields) == len(set().union(*fields)), "STATUS fields overlap"
    assert regmap.CONTROL_COMMIT != regmap.CONTROL_CLEAR_ERROR
    assert regmap.ID_VALUE.to_bytes(4, "big") == b"VFMG"


def test_markdown_lists_every_register():
    text = markdown()
    for reg in GLOBAL_REGS + VF_REGS:
        assert f"| {reg.name} | {reg.access} |" in text
    for code in ErrorCode:
        assert f"| {code.value} | {code.name} |" in text


def test_docs_regmap_is_up_to_date():
    doc = ROOT / "docs" / "regmap.md"
    assert doc.exists(), "docs/regmap.md is missing: run `make docs`"
    assert doc.read_text() == markdown(), "docs/regmap.md is stale: run `make docs`"


def test_irte_registers_match_the_remapper_formats():
    from model.irq_remap import (
        SOURCE_SLOT_BITS,
        FaultReason,
        RemapEntry,
        RemapOp,
        RemapParams,
        entry_fields,
    )
    from model.regmap import (
        IRQ_FAULT_FIELDS,
        IRTE_CMD_OP,
        IRTE_DATA_PENDING,
        irq_fault_fields,
        irte_cmd,
    )
    # the widest tables: most VFs (8-bit ids) and most vectors (11 bits, PCIe MSI-X)
    many_vfs, many_vectors = RemapParams(255, 16), RemapParams(2, 2048)
    assert sum(entry_fields(many_vfs).values()) <= IRTE_DATA_PENDING
    widths = {name: width for name, (_, width) in IRQ_FAULT_FIELDS.items()}
    assert widths["vf"] >= many_vfs.vf_bits and widths["vector"] >= many_vectors.vector_bits
    assert widths["source_slot"] == SOURCE_SLOT_BITS
    assert max(FaultReason) < 1 << widths["reason"]
    assert max(RemapOp) < 1 << IRTE_CMD_OP[1]
    # the documented IRTE_DATA bit positions are RemapEntry.pack's
    word = RemapEntry(present=True, mode=1, source_device=1, source_slot=0xAB, vm=0xCD,
                      guest_vector=0xEF).pack(RemapParams(8, 4))
    assert word == 1 | 1 << 2 | 1 << 3 | 0xAB << 4 | 0xCD << 12 | 0xEF << 20
    assert irte_cmd(RemapOp.READ, 7, 3) == 1 << 24 | 7 << 16 | 3
    with pytest.raises(ValueError, match="IRTE_CMD vector must fit 11 bits, not 2048"):
        irte_cmd(RemapOp.READ, 0, 2048)
    assert irq_fault_fields(1 | 2 << 1 | 1 << 3 | 5 << 4 | 6 << 12 | 7 << 20) == {
        "valid": 1, "reason": 2, "source_device": 1, "source_slot": 5, "vf": 6, "vector": 7}
