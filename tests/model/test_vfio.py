"""The VFIO migration v2 state machine (model/vfio.py) against DESIGN §4, exhaustively.

The arc table and the multi-step resolution are written here again, independently of
``model.vfio.NEXT_HOP``, so a typo in the model's table shows up as a failure.
"""

from __future__ import annotations

import itertools

import pytest

from model.vfio import ALL_FLAGS, DeviceState, MigrationFlags, path, supported_states

S = DeviceState
F = MigrationFlags

# DESIGN §4, copied verbatim: T[cur][target] is the next hop from cur toward target.
DESIGN_TABLE = """
| cur | STOP | RUNNING | STOP_COPY | RESUMING | RUNNING_P2P | PRE_COPY | PRE_COPY_P2P |
|---|---|---|---|---|---|---|---|
| STOP | STOP | RUNNING_P2P | STOP_COPY | RESUMING | RUNNING_P2P | RUNNING_P2P | RUNNING_P2P |
| RUNNING | RUNNING_P2P | RUNNING | RUNNING_P2P | RUNNING_P2P | RUNNING_P2P | PRE_COPY | RUNNING_P2P |
| STOP_COPY | STOP | STOP | STOP_COPY | STOP | STOP | ERROR | ERROR |
| RESUMING | STOP | STOP | STOP | RESUMING | STOP | STOP | STOP |
| RUNNING_P2P | STOP | RUNNING | STOP | STOP | RUNNING_P2P | RUNNING | PRE_COPY_P2P |
| PRE_COPY | RUNNING | RUNNING | PRE_COPY_P2P | RUNNING | RUNNING | PRE_COPY | PRE_COPY_P2P |
| PRE_COPY_P2P | RUNNING_P2P | RUNNING_P2P | STOP_COPY | RUNNING_P2P | RUNNING_P2P | PRE_COPY | PRE_COPY_P2P |
"""  # noqa: E501 (a verbatim copy of the table)


def _parse_table(text: str) -> dict[str, dict[str, str]]:
    rows = [[c.strip() for c in line.strip().strip("|").split("|")]
            for line in text.strip().splitlines()]
    header, body = rows[0][1:], rows[2:]
    table = {row[0]: dict(zip(header, row[1:], strict=True)) for row in body}
    table["ERROR"] = {target: "ERROR" for target in header}  # "ERROR's row is all ERROR"
    return table


TABLE = _parse_table(DESIGN_TABLE)

# DESIGN §4 "States per flag", by name so that it does not lean on the model.
VALID_FLAG_SETS = [F.STOP_COPY, F.STOP_COPY | F.P2P, F.STOP_COPY | F.PRE_COPY, ALL_FLAGS]
INVALID_FLAG_SETS = [F(0), F.P2P, F.PRE_COPY, F.P2P | F.PRE_COPY]


def _states_for(flags: MigrationFlags) -> set[str]:
    states = {"RUNNING", "ERROR", "STOP", "STOP_COPY", "RESUMING"}
    if flags & F.P2P:
        states.add("RUNNING_P2P")
    if flags & F.PRE_COPY:
        states.add("PRE_COPY")
    if flags & F.P2P and flags & F.PRE_COPY:
        states.add("PRE_COPY_P2P")
    return states


def _next(cur: str, target: str, have: set[str]) -> str:
    nxt = TABLE[cur][target]
    while nxt not in have:
        nxt = TABLE[nxt][target]
    return nxt


def _expected(cur: str, target: str, flags: MigrationFlags) -> list[str] | None:
    """The path DESIGN §4 prescribes, or None for an invalid request."""
    have = _states_for(flags)
    if cur == target:
        return []
    if cur not in have or target not in have or target == "ERROR":
        return None
    states, state = [], cur
    while state != target:
        state = _next(state, target, have)
        if state == "ERROR" or state in states:
            return None
        states.append(state)
    return states


def _flag_id(flags: MigrationFlags) -> str:
    return "|".join(f.name for f in F if f & flags)


def _names(states) -> list[str]:
    return [s.name for s in states]


def test_table_copy_is_complete():
    names = [s.name for s in S]
    assert sorted(TABLE) == sorted(names)
    for row in TABLE.values():
        assert sorted(row) == sorted(n for n in names if n != "ERROR")
        assert set(row.values()) <= set(names)


@pytest.mark.parametrize("flags", VALID_FLAG_SETS, ids=_flag_id)
def test_supported_states(flags):
    assert {s.name for s in supported_states(flags)} == _states_for(flags)


@pytest.mark.parametrize("flags", VALID_FLAG_SETS, ids=_flag_id)
def test_every_pair_against_design(flags):
    have = _states_for(flags)
    for cur, target in itertools.product(S, S):
        if cur.name not in have:
            continue  # a device never is in a state its flags do not provide (test below)
        expected = _expected(cur.name, target.name, flags)
        if expected is None:
            with pytest.raises(ValueError, match="invalid VFIO transition") as info:
                path(cur, target, flags)
            message = str(info.value)
            assert cur.name in message and target.name in message
            assert "\n" not in message
            continue
        got = path(cur, target, flags)
        assert _names(got) == expected, f"{cur.name} -> {target.name}"


@pytest.mark.parametrize("flags", VALID_FLAG_SETS, ids=_flag_id)
def test_every_step_is_a_legal_arc(flags):
    """Properties of any returned path, independent of the exact route."""
    have = _states_for(flags)
    for cur, target in itertools.product(S, S):
        if cur.name not in have:
            continue
        try:
            got = path(cur, target, flags)
        except ValueError:
            continue
        assert (got[-1] if got else cur) == target
        assert len(set(got)) == len(got), "a path never visits a state twice"
        previous = cur.name
        for state in got:
            assert state.name in have and state != S.ERROR
            # a single arc: resolving from `previous` toward `state` lands on it directly
            assert _next(previous, state.name, have) == state.name, \
                f"{previous} -> {state.name} is not an arc ({cur.name} -> {target.name})"
            previous = state.name


@pytest.mark.parametrize("flags", VALID_FLAG_SETS, ids=_flag_id)
def test_unsupported_current_state_is_refused(flags):
    """As vfio_mig_get_next_state(): -EINVAL when the current state is not provided."""
    have = _states_for(flags)
    for cur, target in itertools.product(S, S):
        if cur.name in have or cur == target:
            continue
        with pytest.raises(ValueError):
            path(cur, target, flags)


@pytest.mark.parametrize(("cur", "target", "flags", "expected"), [
    (S.RUNNING, S.STOP_COPY, ALL_FLAGS, [S.RUNNING_P2P, S.STOP, S.STOP_COPY]),
    (S.RUNNING, S.STOP_COPY, F.STOP_COPY | F.PRE_COPY, [S.STOP, S.STOP_COPY]),
    (S.RUNNING, S.STOP_COPY, F.STOP_COPY, [S.STOP, S.STOP_COPY]),
    (S.PRE_COPY, S.STOP_COPY, ALL_FLAGS, [S.PRE_COPY_P2P, S.STOP_COPY]),
    (S.PRE_COPY, S.STOP_COPY, F.STOP_COPY | F.PRE_COPY, [S.STOP_COPY]),
    (S.RUNNING, S.PRE_COPY, ALL_FLAGS, [S.PRE_COPY]),
    (S.STOP, S.RUNNING, ALL_FLAGS, [S.RUNNING_P2P, S.RUNNING]),
    (S.STOP, S.RUNNING, F.STOP_COPY, [S.RUNNING]),
    (S.RESUMING, S.RUNNING, ALL_FLAGS, [S.STOP, S.RUNNING_P2P, S.RUNNING]),
    (S.STOP_COPY, S.STOP, ALL_FLAGS, [S.STOP]),
    (S.PRE_COPY_P2P, S.RUNNING, ALL_FLAGS, [S.RUNNING_P2P, S.RUNNING]),
    (S.RUNNING, S.RUNNING, ALL_FLAGS, []),
])
def test_known_paths(cur, target, flags, expected):
    assert path(cur, target, flags) == expected


def test_default_flags_are_all_flags():
    assert path(S.RUNNING, S.STOP_COPY) == [S.RUNNING_P2P, S.STOP, S.STOP_COPY]


@pytest.mark.parametrize("flags", [F.STOP_COPY | F.PRE_COPY, ALL_FLAGS], ids=_flag_id)
@pytest.mark.parametrize("target", [S.PRE_COPY, S.PRE_COPY_P2P])
def test_stop_copy_cannot_go_back_to_pre_copy(flags, target):
    if target.name not in _states_for(flags):
        pytest.skip("target not provided by these flags")
    with pytest.raises(ValueError, match="invalid VFIO transition STOP_COPY -> PRE_COPY"):
        path(S.STOP_COPY, target, flags)


@pytest.mark.parametrize("flags", VALID_FLAG_SETS, ids=_flag_id)
def test_error_is_unreachable_and_unrequestable(flags):
    for state in S:
        if state == S.ERROR:
            continue
        with pytest.raises(ValueError, match=f"{state.name} -> ERROR"):
            path(state, S.ERROR, flags)
        with pytest.raises(ValueError, match=f"ERROR -> {state.name}"):
            path(S.ERROR, state, flags)
        if state.name in _states_for(flags):
            for target in S:
                if target.name in _states_for(flags) and target != state:
                    try:
                        assert S.ERROR not in path(state, target, flags)
                    except ValueError:
                        pass


@pytest.mark.parametrize("flags", INVALID_FLAG_SETS, ids=lambda f: _flag_id(f) or "none")
def test_flags_without_stop_copy_raise(flags):
    with pytest.raises(ValueError, match="lack STOP_COPY, which VFIO makes mandatory"):
        path(S.RUNNING, S.STOP, flags)
    with pytest.raises(ValueError, match="lack STOP_COPY"):
        supported_states(flags)


def test_numbers_match_linux_uapi():
    assert [(s.name, s.value) for s in S] == [
        ("ERROR", 0), ("STOP", 1), ("RUNNING", 2), ("STOP_COPY", 3), ("RESUMING", 4),
        ("RUNNING_P2P", 5), ("PRE_COPY", 6), ("PRE_COPY_P2P", 7)]
    assert (F.STOP_COPY, F.P2P, F.PRE_COPY) == (1, 2, 4)
