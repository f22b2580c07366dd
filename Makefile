# Two entry points for people and CI. Both work on a fresh clone: they create .venv and install
# simreel with its test extras from pyproject.toml first.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
export MUJOCO_GL ?= egl

.PHONY: demo test install bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,gym]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/simreel run cartpole --episodes 2 --duration 4 --policy random --video both --out simreel-out

test: install
	$(PY) -m pytest -q -ra

bench: install
	$(PY) -m pip install -q -e '.[test,gym,bench]'
	$(PY) -m benchmarks.run

clean:
	rm -rf $(VENV) simreel-out simreel-data .pytest_cache
