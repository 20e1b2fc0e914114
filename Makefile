# cafe: the README's two commands are `make demo` (set up + run the pipeline on a generated
# sample with random weights) and `make test`.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch/torchvision pair: the CUDA build from PyPI (on this project's CI machines, from local disk).
TORCH ?= torch==2.14.1 torchvision==0.29.1
DEMO ?= demo

.PHONY: setup test demo bench reproduce sweep clean help

help:
	@echo "make setup      create $(VENV) and install cafe with its test tools"
	@echo "make demo       synthetic multi-domain sample -> extract -> train -> eval (random weights)"
	@echo "make test       run the test suite"
	@echo "make bench      speed and memory benchmarks (JSON in bench-results/)"
	@echo "make reproduce  the paper's tables for every dataset whose root is configured"

setup: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install $(TORCH)
	$(BIN)/python -m pip install -e '.[dev]'
	touch $@

test: setup
	$(BIN)/python -m pytest -n 2 -q tests

clean:
	rm -rf $(VENV) $(DEMO) runs results bench-results
