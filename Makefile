# wgf — build the virtual environment, run the demo and the tests.
#
#   make demo   set up, then run the default case with every solver on 2 MPI ranks
#   make test   set up, then run the serial tests and the 2-rank MPI tests
#
# The venv is built from the first Python >= 3.12 found: python3.13 / python3.12
# on PATH, then ~/.pyenv/versions/3.1[2-9]*, then /usr/bin/python3.1[2-9].

SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
MPIEXEC := $(VENV)/bin/mpiexec
DOLFINX_WHEEL := dolfinx-solver-real==0.11.0.post0
DEMO_CASE ?= porous_medium_2d
NP ?= 2

# First interpreter that actually runs (pyenv shims exist but may refuse) and is >= 3.12.
FIND_PYTHON := for p in python3.13 python3.12 $$(ls -d $$HOME/.pyenv/versions/3.1[2-9]*/bin/python3 2>/dev/null) \
	$$(ls /usr/bin/python3.1[2-9] 2>/dev/null); do \
	  if $$p -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; then echo $$p; break; fi; \
	done

.PHONY: all venv demo test test-serial test-mpi lint paraview clean

all: venv

$(VENV)/.stamp: pyproject.toml Makefile
	@base=$$($(FIND_PYTHON)); \
	if [ -z "$$base" ]; then \
	  echo "error: no Python >= 3.12 found (looked for python3.13, python3.12 on PATH, ~/.pyenv/versions/3.1[2-9]*, /usr/bin/python3.1[2-9])" >&2; \
	  exit 2; \
	fi; \
	echo "building $(VENV) with $$base ($$($$base --version)), then installing the DOLFINx"; \
	echo "wheel $(DOLFINX_WHEEL) and the dependencies of pyproject.toml with pip (1-3 minutes)…"; \
	$$base -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(DOLFINX_WHEEL)"
	$(PY) -m pip install -q -e ".[test]"
	@touch $@

venv: $(VENV)/.stamp

# Debian packages of the ParaView tests: python3-paraview (pvbatch reads our XDMF back and
# renders the compare picture) and xvfb (xvfb-run gives pvbatch a display on a machine
# without one).  Installed with apt-get when one is missing and we are root; otherwise the
# tests that need them are skipped.  apt-get takes minutes and is quiet: its output goes
# to APT_LOG, and a line every 20 s says how far it got.
APT_LOG := /tmp/wgf-apt-get.log
APT_INSTALL := DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends

paraview:
	@need=""; \
	command -v pvbatch >/dev/null 2>&1 || need="$$need python3-paraview"; \
	command -v xvfb-run >/dev/null 2>&1 || need="$$need xvfb"; \
	command -v xauth >/dev/null 2>&1 || need="$$need xauth"; \
	need="$${need# }"; \
	if [ -z "$$need" ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then \
	  echo "note: $$need not installed, and installing needs root and apt-get: the ParaView tests will be skipped"; \
	  exit 0; \
	fi; \
	case " $$need " in *" python3-paraview "*) took="about 3 minutes";; *) took="under a minute";; esac; \
	echo "installing $$need with apt-get ($$took on a fresh machine; log in $(APT_LOG))…"; \
	start=$$(date +%s); \
	( $(APT_INSTALL) $$need || { apt-get update -q && $(APT_INSTALL) $$need; } ) >$(APT_LOG) 2>&1 & \
	pid=$$!; i=0; \
	while kill -0 $$pid 2>/dev/null; do \
	  sleep 1; i=$$((i + 1)); \
	  if [ $$((i % 20)) = 0 ]; then \
	    echo "  … $$i s: $$(grep -c '^Setting up' $(APT_LOG)) packages set up so far"; \
	  fi; \
	done; \
	if wait $$pid; then echo "installed $$need in $$(( $$(date +%s) - start )) s"; \
	else echo "warning: apt-get failed (see $(APT_LOG)): the ParaView tests will be skipped"; fi

demo: venv
	$(MPIEXEC) -n $(NP) $(PY) -m mpi4py -m wgf run $(DEMO_CASE) --solver all --out out/demo

test-serial: venv paraview
	$(PY) -m pytest -q -m "not mpi" -p no:cacheprovider

test-mpi: venv
	$(MPIEXEC) -n 2 $(PY) -m mpi4py -m pytest -q -m mpi -p no:cacheprovider

test: test-serial test-mpi

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) out
