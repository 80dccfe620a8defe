"""Small helpers shared by the model and the RTL (hdl/ imports them from here)."""

from __future__ import annotations


def bits_for(n: int) -> int:
    """Bits to index ``n`` items (at least 1)."""
    return max(1, (n - 1).bit_length())


def check_int(owner: str, name: str, value: object, low: int, high: int) -> None:
    """Raise the one error message every parameter check uses: ``value`` must be an int
    (not a bool) in ``[low, high]``."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{owner} {name} must be an integer, not {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{owner} {name} must be between {low} and {high}, not {value}")


__all__ = ["bits_for", "check_int"]
