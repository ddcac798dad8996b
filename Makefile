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
	echo "building $(VENV) with $$base ($$($$base --version))"; \
	$$base -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(DOLFINX_WHEEL)"
	$(PY) -m pip install -q -e ".[test]"
	@touch $@

venv: $(VENV)/.stamp

# pvbatch reads our XDMF back in the tests; Debian ships it in python3-paraview.
# Installed when we are root with apt-get; otherwise those tests are skipped.
paraview:
	@if command -v pvbatch >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing python3-paraview (pvbatch) with apt-get"; \
	  (apt-get install -y -q --no-install-recommends python3-paraview >/dev/null 2>&1 || \
	   (apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -q --no-install-recommends python3-paraview >/dev/null)) || \
	  echo "warning: python3-paraview could not be installed; ParaView tests will be skipped"; \
	else echo "note: pvbatch not found and not root; ParaView tests will be skipped"; fi

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
