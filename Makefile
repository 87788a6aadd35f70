# The two set-up commands of the README. Both create .venv in the checkout and install flexcap into it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# LSL stays on this machine: machine scope, no IPv6, the simulated lab's session id.
export LSLAPICFG := $(CURDIR)/lsl_api.cfg
export QT_QPA_PLATFORM ?= offscreen

.PHONY: demo test lint bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

demo: $(BIN)/.installed
	$(BIN)/flexcap record --duration 10 --subject demo01 --action demo_lift --rep 1

test: $(BIN)/.installed
	$(BIN)/python -m pytest -q

lint: $(BIN)/.installed
	$(BIN)/ruff check .

bench: $(BIN)/.installed
	$(BIN)/python benchmarks/recorder_load.py

clean:
	rm -rf $(VENV) build *.egg-info
