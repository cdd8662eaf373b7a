# Two entry points: `make demo` (set up, then run the main job) and `make test`.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.longseq-installed

.PHONY: setup demo test bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e ".[vision,genomics,train,yolo,onnx,bench,dev]"
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(PY) scripts/train_dna.py

# Two pytest-xdist workers, each with its share of the cores (tests/conftest.py).
test: setup
	$(PY) -m pytest -n 2 --dist worksteal

bench: setup
	$(PY) scripts/bench_attention.py

clean:
	rm -rf $(VENV) build *.egg-info
