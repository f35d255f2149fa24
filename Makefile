# Every target does its own setup on a fresh machine: a venv, the CPU build of torch, the package.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: test test-slow demo demo-model install bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# the CPU build of torch first: an unpinned torch pulls gigabytes of CUDA packages
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

# LJ-13 from the shipped tilted model (molsample/data/models/lj13-demo.pt): final samples with exact
# weights, reference samples and the report; the output names the reused model and its command.
# Torch threads: molsample's measured default (benchmarks/thread_default.py; --threads N to change it).
demo: $(STAMP)
	$(VENV)/bin/molsample tilt --system lj13 --preset demo --out runs/demo-lj13 --no-progress

# Rebuild the shipped demo model (runs/lj13-demo-model.toml: the default preset with aligned pairs
# and 1,000 final samples; about 42 CPU-minutes) and copy it into the package.
demo-model: $(STAMP)
	$(VENV)/bin/molsample tilt --system lj13 --config runs/lj13-demo-model.toml --out runs/lj13-demo-model
	cp runs/lj13-demo-model/model.pt molsample/data/models/lj13-demo.pt

bench: $(STAMP)
	$(PY) benchmarks/energy_throughput.py --threads 1
	$(PY) benchmarks/flow_throughput.py
	$(PY) benchmarks/ring2d_table.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
