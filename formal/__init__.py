"""Formal property harnesses of the control blocks, run by ``make formal`` (SymbiYosys)."""
