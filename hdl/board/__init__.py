"""The board build: the self-testing system (``selftest``) with its traffic checker,
migration sequencer, AXI4-Lite master, UART report, and the board top with its PLL."""
