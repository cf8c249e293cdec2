# kperflab — see README.md. Every target sets up what it needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: help setup system-deps workshop test lint jupyter images notebooks bench clean

help:
	@echo "make workshop   run the notebooks against the lab (or your cluster) into out/: executed notebooks, offline HTML,"
	@echo "                report out/index.html (ARGS=\"--notebooks 01,03 --full\")"
	@echo "make test       the whole test suite"
	@echo "make jupyter    JupyterLab at the repository root (pictures in images/ show), opening notebooks/"
	@echo "make lint       ruff"
	@echo "make notebooks  jupytext --sync: bring each notebook and its notebooks/NN-name.py pair up to date"
	@echo "make bench      benchmark scripts (figures for the issue notes)"

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c requirements.lock -e '.[dev]'
	touch $@

setup: $(STAMP) system-deps

system-deps:
	@scripts/system-deps.sh

images:
	@$(PYTHON) images/render.py

workshop: setup images
	$(BIN)/kperflab workshop $(ARGS)

test: setup images
	$(BIN)/pytest -q

lint: setup
	$(BIN)/ruff check kperflab tests benchmarks

notebooks: setup
	$(BIN)/jupytext --sync notebooks/[0-9][0-9]-*.ipynb

jupyter: setup images
	$(BIN)/jupyter lab --ServerApp.root_dir=. --LabApp.default_url=/lab/tree/notebooks $(if $(filter 0,$(shell id -u)),--allow-root)

bench: setup
	$(BIN)/python benchmarks/pod_startup.py
	$(BIN)/python benchmarks/metrics_sampling.py
	$(BIN)/python benchmarks/kube_proxy.py
	$(BIN)/python benchmarks/dns_throughput.py
	$(BIN)/python benchmarks/storage.py

clean:
	rm -rf out .pytest_cache
