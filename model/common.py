"""Small helpers shared by the model and the RTL (hdl/ imports them from here): the one
parameter check every constructor uses, bit widths, and packing of header fields."""

from __future__ import annotations

import math
from collections.abc import Mapping


def bits_for(n: int) -> int:
    """Bits to index ``n`` items (at least 1)."""
    return max(1, (n - 1).bit_length())


class ParameterError(TypeError, ValueError):
    """A bad constructor or configuration parameter. Both a ``ValueError`` (what every CLI
    catches to print its one-line error) and a ``TypeError`` (what a wrong type is in
    Python), as numpy's ``AxisError`` is both a ``ValueError`` and an ``IndexError``."""


def _bounds(low, high, low_open: bool = False, high_open: bool = False) -> str:
    if low is None:
        return f"at most {high}"
    if high is None:
        return f"greater than {low}" if low_open else f"at least {low}"
    if low_open or high_open:
        return f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    return f"between {low} and {high}"


def check_int(owner: str, name: str, value: object, low: int | None,
              high: int | None = None) -> int:
    """The one integer-parameter check: ``value`` must be an int (not a bool) in
    ``[low, high]`` (a None bound: none that side; the caller checks a range its own
    message explains). The message names the owner, the parameter and the contract."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise ParameterError(f"{owner} {name} must be an integer, not {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ParameterError(f"{owner} {name} must be {_bounds(low, high)}, not {value}")
    return value


def check_number(owner: str, name: str, value: object, low: float, high: float | None = None,
                 *, low_open: bool = False, high_open: bool = False) -> float:
    """The same for a finite real number (``*_open``: that bound itself is refused)."""
    if (not isinstance(value, (int, float)) or isinstance(value, bool)
            or not math.isfinite(value)):
        raise ParameterError(f"{owner} {name} must be a finite number, not {value!r}")
    too_high = high is not None and (value > high or (high_open and value == high))
    if value < low or (low_open and value == low) or too_high:
        bounds = _bounds(low, high, low_open, high_open)
        raise ParameterError(f"{owner} {name} must be {bounds}, not {value}")
    return value


def check_fraction(owner: str, name: str, value: object, *, low_open: bool = False) -> float:
    """A share in [0, 1] (``low_open``: in (0, 1])."""
    return check_number(owner, name, value, 0, 1, low_open=low_open)


def pack_fields(what: str, fields: Mapping[str, tuple[int, int]], **values: int) -> int:
    """One word from named fields ``{name: (lsb, width)}``; a field missing from ``values``
    is 0, a value that does not fit its width is refused."""
    unknown = set(values) - set(fields)
    if unknown:
        raise ValueError(f"{what} has no field {', '.join(sorted(unknown))}")
    word = 0
    for name, (lsb, width) in fields.items():
        value = values.get(name, 0)
        if not 0 <= value < 1 << width:
            raise ValueError(f"{what} field {name}={value} does not fit in {width} bits")
        word |= value << lsb
    return word


def unpack_fields(fields: Mapping[str, tuple[int, int]], word: int) -> dict[str, int]:
    """The inverse of ``pack_fields``."""
    return {name: (word >> lsb) & ((1 << width) - 1) for name, (lsb, width) in fields.items()}


def check_fault_inject(owner: str, value: str | None, faults: tuple[str, ...]) -> str | None:
    """The planted-bug parameter every block takes: None or one of ``faults``."""
    if value is not None and value not in faults:
        raise ParameterError(f"{owner} _fault_inject must be None or one of "
                             f"{', '.join(faults)}, not {value!r}")
    return value


__all__ = ["ParameterError", "bits_for", "check_fault_inject", "check_fraction", "check_int",
           "check_number", "pack_fields", "unpack_fields"]
