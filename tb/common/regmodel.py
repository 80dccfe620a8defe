"""pyuvm register model of the control plane, built from model/regmap.py.

``CsrRegModel(n_vfs)`` is a ``uvm_reg_block`` holding the global registers and one
``VfRegBlock`` sub-block per VF (``model.vf[i]``), each a submap of the root map ``axil``
at ``VF_BASE + i * VF_STRIDE``, so ``model.vf[3].STATUS.get_address()`` equals
``model.regmap.vf_reg(3, "STATUS")``.  Registers are attributes by their regmap name
(``model.ID``, ``model.vf[0].REQUESTED_STATE``) and in ``regs`` dictionaries.

Fields: model/regmap.py names bit positions only for STATUS, CONTROL and LOCATION (and a
register's doc string for the rest); ``FIELDS`` below spells out every register's fields
from those constants and docs.  A register not listed there is one 32-bit field.
Registers the hardware changes on its own are *volatile* (no mirror check on read); only
ID, CAPS and IMAGE_WORDS are constants, checked against their reset values when a
``SystemConfig`` gives them.

``AxilRegAdapter`` turns register operations into ``tb.common.axil.AxilItem``s, so
``model.map.set_sequencer(agent.seqr, AxilRegAdapter())`` routes frontdoor accesses
through the AXI4-Lite agent; a response other than OKAY makes the access ``UVM_NOT_OK``.
"""

from __future__ import annotations

import logging

from pyuvm import (
    uvm_access_e,
    uvm_endianness_e,
    uvm_reg,
    uvm_reg_adapter,
    uvm_reg_block,
    uvm_reg_bus_op,
    uvm_reg_field,
    uvm_sequence_item,
    uvm_status_e,
)

from model.config import SystemConfig
from model.regmap import (
    CONTROL_CLEAR_ERROR,
    CONTROL_COMMIT,
    GLOBAL_REGS,
    ID_VALUE,
    LOCATION_MIGRATING,
    STATUS_BUSY,
    STATUS_CONVERGED,
    STATUS_ERROR,
    STATUS_READY_TO_COMMIT,
    STATUS_REASON,
    VF_BASE,
    VF_REGS,
    VF_STRIDE,
    Register,
)

from .axil import FULL_STROBE, AxilItem, AxilResp

__all__ = ["CsrRegModel", "VfRegBlock", "AxilRegAdapter", "RegErrorLog", "FIELDS", "CONSTANT",
           "caps_value", "fields_of"]

# register name -> (field name, lsb, width); from model/regmap.py's constants and docs
FIELDS: dict[str, tuple[tuple[str, int, int], ...]] = {
    "CAPS": (("flags", 0, 3), ("n_vfs", 8, 8), ("host_slots", 16, 8), ("offload_slots", 24, 8)),
    "DEVICE_STATE": (("state", 0, 3),),
    "REQUESTED_STATE": (("state", 0, 3),),
    "LOCATION": (("device", 0, 1), ("slot", 8, 8), ("migrating", LOCATION_MIGRATING, 1)),
    "STATUS": (("error", *STATUS_ERROR), ("reason", *STATUS_REASON), ("busy", STATUS_BUSY, 1),
               ("converged", STATUS_CONVERGED, 1),
               ("ready_to_commit", STATUS_READY_TO_COMMIT, 1)),
    "CONTROL": (("commit", CONTROL_COMMIT, 1), ("clear_error", CONTROL_CLEAR_ERROR, 1)),
    "MIGRATIONS": (("committed", 0, 16), ("aborted", 16, 16)),
}
CONSTANT = ("ID", "CAPS", "IMAGE_WORDS")   # never change after reset


def fields_of(reg: Register) -> tuple[tuple[str, int, int], ...]:
    """The fields of ``reg`` (a ``Register.fields`` of (name, lsb, width), when regmap.py
    grows one, wins over ``FIELDS``)."""
    own = getattr(reg, "fields", None)
    if own:
        return tuple(tuple(f) for f in own)
    return FIELDS.get(reg.name, (("value", 0, 32),))


def caps_value(config: SystemConfig) -> int:
    """CAPS as hdl/system.py builds it."""
    return (int(config.flags) | config.n_vfs << 8 | config.host_slots << 16
            | config.offload_slots % 256 << 24)


class CsrReg(uvm_reg):
    """One 32-bit register of model/regmap.py."""

    def __init__(self, reg: Register, reset: int | None = None):
        super().__init__(reg.name, 32)
        self.desc = reg
        self.reset_value = reset

    def build(self) -> None:
        constant = self.reset_value is not None and self.desc.name in CONSTANT
        self.fields: dict[str, uvm_reg_field] = {}
        for name, lsb, width in fields_of(self.desc):
            field = uvm_reg_field(name)
            reset = ((self.reset_value or 0) >> lsb) & ((1 << width) - 1)
            field.configure(self, width, lsb, self.desc.access, volatile=not constant,
                            reset=reset, has_reset=self.reset_value is not None,
                            is_rand=False, individually_accessible=False)
            self.fields[name] = field


def _add_registers(block: uvm_reg_block, regs: tuple[Register, ...], resets: dict) -> None:
    block.regs = {}
    for desc in regs:
        reg = CsrReg(desc, resets.get(desc.name))
        reg.configure(block)
        reg.build()
        block.map.add_reg(reg, desc.offset, desc.access)
        block.regs[desc.name] = reg
        setattr(block, desc.name, reg)


class VfRegBlock(uvm_reg_block):
    """The VFIO-style registers of one VF (``VF_REGS``), offsets relative to its base."""

    def __init__(self, name: str, vf: int):
        super().__init__(name)
        self.vf = vf

    def build(self, parent: uvm_reg_block) -> None:
        self.configure(parent)
        self.map = self.create_map("map", 0, 4, uvm_endianness_e.UVM_LITTLE_ENDIAN, True)
        _add_registers(self, VF_REGS, {})


class CsrRegModel(uvm_reg_block):
    """The whole register map for ``n_vfs`` VFs; locked and ready after construction.

    ``config`` (optional) gives CAPS and IMAGE_WORDS their reset values, so reading them
    checks the hardware against the configuration."""

    def __init__(self, n_vfs: int, config: SystemConfig | None = None, name: str = "csr"):
        if not isinstance(n_vfs, int) or n_vfs < 1:
            raise ValueError(f"n_vfs must be a positive int, not {n_vfs!r}")
        super().__init__(name)
        self.n_vfs = n_vfs
        resets = {"ID": ID_VALUE}
        if config is not None:
            resets["CAPS"] = caps_value(config)
            resets["IMAGE_WORDS"] = config.layout.image_words
        self.map = self.create_map("axil", 0, 4, uvm_endianness_e.UVM_LITTLE_ENDIAN, True)
        _add_registers(self, GLOBAL_REGS, resets)
        self.vf: list[VfRegBlock] = []
        for vf in range(n_vfs):
            block = VfRegBlock(f"vf{vf}", vf)
            block.build(self)
            self.map.add_submap(block.map, VF_BASE + vf * VF_STRIDE)
            self.vf.append(block)
        self.lock_model()
        self.reset()   # mirrors start at the reset values
        # No bus predictor yet: mirrors follow the model's own frontdoor accesses.
        self.map.set_auto_predict(True)

    def all_registers(self) -> list[tuple[int | None, CsrReg]]:
        """(VF or None for a global register, register), in address order."""
        regs = [(None, r) for r in self.regs.values()]
        regs += [(b.vf, r) for b in self.vf for r in b.regs.values()]
        return sorted(regs, key=lambda pair: pair[1].get_address())

    def by_address(self, addr: int) -> CsrReg | None:
        return self.map.get_reg_by_offset(addr)


class RegErrorLog(logging.Handler):
    """Collects the errors pyuvm's register layer only logs (a mirror mismatch on a checked
    read, a write to a read-only register...), so that a test can fail on them.

    ``with RegErrorLog() as errors: ...``; ``errors.messages`` lists them."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def __enter__(self) -> RegErrorLog:
        logging.getLogger("RegModel").addHandler(self)
        return self

    def __exit__(self, *exc) -> None:
        logging.getLogger("RegModel").removeHandler(self)


class AxilRegAdapter(uvm_reg_adapter):
    """uvm_reg_bus_op <-> ``AxilItem``: 32-bit accesses, full strobe, status from the
    AXI response (anything but OKAY is ``UVM_NOT_OK``)."""

    def __init__(self, name: str = "axil_reg_adapter"):
        super().__init__(name)
        self.supports_byte_enable = False
        self.provides_responses = False   # the driver completes the item in place

    def reg2bus(self, rw: uvm_reg_bus_op) -> uvm_sequence_item:
        write = rw.kind == uvm_access_e.UVM_WRITE
        return AxilItem("reg_item", write=write, addr=rw.addr,
                        data=rw.data if write else 0, strb=FULL_STROBE)

    def bus2reg(self, bus_item: uvm_sequence_item, rw: uvm_reg_bus_op) -> None:
        rw.kind = uvm_access_e.UVM_WRITE if bus_item.write else uvm_access_e.UVM_READ
        rw.addr = bus_item.addr
        rw.data = bus_item.data
        rw.status = (uvm_status_e.UVM_IS_OK if bus_item.resp == AxilResp.OKAY
                     else uvm_status_e.UVM_NOT_OK)
