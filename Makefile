# cafe: the README's two commands are `make demo` (set up + run the pipeline on a generated
# sample with random weights) and `make test`.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch/torchvision pair: the CUDA build from PyPI (on this project's CI machines, from local disk).
TORCH ?= torch==2.14.1 torchvision==0.29.1
DEMO ?= demo

.PHONY: setup test test-fast demo bench gpu-check reproduce sweep clean help

help:
	@echo "make setup      create $(VENV) and install cafe with its test tools"
	@echo "make demo       synthetic multi-domain sample -> extract -> train -> eval (random weights)"
	@echo "make test       run the test suite (what CI runs)"
	@echo "make test-fast  the suite without the slow and real-architecture tests (a few minutes)"
	@echo "make bench      speed and memory benchmarks (JSON in bench-results/)"
	@echo "make gpu-check  every CUDA path once, with its speed (bench-results/gpu-check.json; README \"GPU check\")"
	@echo "make reproduce  the paper's tables for every dataset whose root is configured"

setup: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install $(TORCH)
	$(BIN)/python -m pip install -e '.[dev,predict]'
	$(BIN)/python -m pip install --no-deps facenet-pytorch==2.6.0
	touch $@

# ruff (lint + import order, configured in pyproject.toml), then the suite
test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n 2 -q tests

# the quick tier while working: no whole pipelines, torchrun launches or real ViT-B-32 graphs
test-fast: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n 2 -q -m "not slow and not real" tests

# The demo: three synthetic domains (line drawings in the RAF-DB layout, colour and low-res
# greyscale in class folders), ViT-B-32 with RANDOM weights (no download), train on one domain,
# evaluate on all three. Everything it writes says RANDOM WEIGHTS.
DEMO_CLIP ?= --model ViT-B-32 --random-weights
DEMO_TRAIN ?= --backbone-weights none --epochs 8 --image-size 64 --lr 1e-3 --batch-size 32

demo: setup
	$(BIN)/cafe synth $(DEMO)/data --force
	$(BIN)/cafe extract --dataset rafdb --root $(DEMO)/data/synth-line --name synth-line $(DEMO_CLIP) --cache-dir $(DEMO)/cache
	$(BIN)/cafe extract --dataset folder --root $(DEMO)/data/synth-color $(DEMO_CLIP) --cache-dir $(DEMO)/cache
	$(BIN)/cafe extract --dataset folder --root $(DEMO)/data/synth-lowres $(DEMO_CLIP) --cache-dir $(DEMO)/cache
	rm -rf $(DEMO)/run
	$(BIN)/cafe train --source synth-line --cache-dir $(DEMO)/cache --out $(DEMO)/run $(DEMO_TRAIN)

# The paper's tables for every dataset whose root is configured (README, "Dataset roots").
# Pass weights through, e.g. make reproduce TRAIN_ARGS='--backbone-weights resnet18_msceleb.pth'
# and use several GPUs of this node with NPROC=8 (torchrun, README "Scaling out").
EXTRACT_ARGS ?=
TRAIN_ARGS ?=
NPROC ?= 1
# e.g. make reproduce REPRODUCE_ARGS=--dry-run (the settings and commands), or '--precision bf16'
REPRODUCE_ARGS ?=
reproduce: setup
	$(BIN)/cafe reproduce --nproc-per-node $(NPROC) --extract-args "$(EXTRACT_ARGS)" --train-args "$(TRAIN_ARGS)" $(REPRODUCE_ARGS)

sweep: setup
	$(BIN)/cafe reproduce --tables 1 --sweep --nproc-per-node $(NPROC) --extract-args "$(EXTRACT_ARGS)" --train-args "$(TRAIN_ARGS)"

bench: setup
	$(BIN)/python -m bench.run $(BENCH_ARGS)

# One run that proves the CUDA paths and measures the GPU (README "GPU check"); on a machine
# without one: make gpu-check GPU_ARGS='--device cpu --quick'
GPU_ARGS ?=
gpu-check: setup
	$(BIN)/python -m bench.gpu_check $(GPU_ARGS)

clean:
	rm -rf $(VENV) $(DEMO) runs results bench-results
