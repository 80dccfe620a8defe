"""The Linux VFIO migration uAPI v2 device state machine (docs/design.md).

State numbers and arcs follow ``include/uapi/linux/vfio.h`` and
``vfio_mig_get_next_state()`` in ``drivers/vfio/vfio_main.c``, so a driver written
against VFIO maps 1:1 onto the vfmig register interface.
"""

from __future__ import annotations

from enum import IntEnum, IntFlag


class DeviceState(IntEnum):
    ERROR = 0
    STOP = 1
    RUNNING = 2
    STOP_COPY = 3
    RESUMING = 4
    RUNNING_P2P = 5
    PRE_COPY = 6
    PRE_COPY_P2P = 7


class MigrationFlags(IntFlag):
    STOP_COPY = 1
    P2P = 2
    PRE_COPY = 4


ALL_FLAGS = MigrationFlags.STOP_COPY | MigrationFlags.P2P | MigrationFlags.PRE_COPY

_S = DeviceState
_ORDER = (_S.STOP, _S.RUNNING, _S.STOP_COPY, _S.RESUMING, _S.RUNNING_P2P, _S.PRE_COPY,
          _S.PRE_COPY_P2P)
_ROWS = {
    _S.STOP: (_S.STOP, _S.RUNNING_P2P, _S.STOP_COPY, _S.RESUMING, _S.RUNNING_P2P,
              _S.RUNNING_P2P, _S.RUNNING_P2P),
    _S.RUNNING: (_S.RUNNING_P2P, _S.RUNNING, _S.RUNNING_P2P, _S.RUNNING_P2P, _S.RUNNING_P2P,
                 _S.PRE_COPY, _S.RUNNING_P2P),
    _S.STOP_COPY: (_S.STOP, _S.STOP, _S.STOP_COPY, _S.STOP, _S.STOP, _S.ERROR, _S.ERROR),
    _S.RESUMING: (_S.STOP, _S.STOP, _S.STOP, _S.RESUMING, _S.STOP, _S.STOP, _S.STOP),
    _S.RUNNING_P2P: (_S.STOP, _S.RUNNING, _S.STOP, _S.STOP, _S.RUNNING_P2P, _S.RUNNING,
                     _S.PRE_COPY_P2P),
    _S.PRE_COPY: (_S.RUNNING, _S.RUNNING, _S.PRE_COPY_P2P, _S.RUNNING, _S.RUNNING,
                  _S.PRE_COPY, _S.PRE_COPY_P2P),
    _S.PRE_COPY_P2P: (_S.RUNNING_P2P, _S.RUNNING_P2P, _S.STOP_COPY, _S.RUNNING_P2P,
                      _S.RUNNING_P2P, _S.PRE_COPY, _S.PRE_COPY_P2P),
}

#: ``NEXT_HOP[cur][target]``: the first arc from ``cur`` toward ``target`` (VFIO's table).
NEXT_HOP: dict[DeviceState, dict[DeviceState, DeviceState]] = {
    cur: dict(zip(_ORDER, row, strict=True)) for cur, row in _ROWS.items()
}
NEXT_HOP[_S.ERROR] = {t: _S.ERROR for t in _ORDER}


def supported_states(flags: MigrationFlags) -> frozenset[DeviceState]:
    """The device states a device with these capability flags provides."""
    flags = MigrationFlags(flags)
    if not flags & MigrationFlags.STOP_COPY:
        raise ValueError(f"migration flags {flags!r} lack STOP_COPY, which VFIO makes mandatory")
    states = {_S.RUNNING, _S.ERROR, _S.STOP, _S.STOP_COPY, _S.RESUMING}
    if flags & MigrationFlags.P2P:
        states.add(_S.RUNNING_P2P)
    if flags & MigrationFlags.PRE_COPY:
        states.add(_S.PRE_COPY)
    if flags & MigrationFlags.P2P and flags & MigrationFlags.PRE_COPY:
        states.add(_S.PRE_COPY_P2P)
    return frozenset(states)


def next_state(current: DeviceState, target: DeviceState, flags: MigrationFlags) -> DeviceState:
    """The next state to enter from ``current`` toward ``target``, skipping states the
    flags do not provide; ERROR means the request is invalid."""
    have = supported_states(flags)
    current, target = _S(current), _S(target)
    if target not in have or current not in have or _S.ERROR in (current, target):
        return _S.ERROR
    nxt = NEXT_HOP[current][target]
    while nxt not in have:
        nxt = NEXT_HOP[nxt][target]
    return nxt


def path(current: DeviceState, target: DeviceState,
         flags: MigrationFlags = ALL_FLAGS) -> list[DeviceState]:
    """The states passed through after ``current``, ending at ``target`` (empty when equal).

    Raises ``ValueError`` naming both states when the request is invalid."""
    current, target = _S(current), _S(target)
    states: list[DeviceState] = []
    state = current
    while state != target:
        state = next_state(state, target, flags)
        if state == _S.ERROR:
            raise ValueError(
                f"invalid VFIO transition {current.name} -> {target.name} with flags "
                f"{MigrationFlags(flags)!r}: no legal arc sequence leads there")
        states.append(state)
    return states
