# Two commands set everything up (see README.md):
#   make demo   install t12k into .venv and run the end-to-end demo
#   make test   install t12k with its test tools into .venv and run the whole test suite
#   make lint   ruff (lint and format check) on the whole tree, mypy on the whole package
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The tested PyTorch pair (CUDA build on x86_64; it runs on the CPU too).
TORCH ?= torch==2.14.1 torchvision==0.29.1

.PHONY: demo test lint format install install-test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.torch: | $(BIN)/python
	$(BIN)/python -m pip install --quiet $(TORCH)
	touch $@

$(VENV)/.installed: pyproject.toml $(VENV)/.torch
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

demo: install
	$(BIN)/t12k demo

test: install-test
	$(BIN)/python -m pytest -q

lint: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install-test
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) demo-out .pytest_cache
