# mde_ros: `make demo` and `make test` create .venv if missing and install everything first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch must come first, pinned, so that nothing pulls the multi-GB CUDA build; on the public PyPI
# a CPU-only machine wants TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu".
TORCH_SPEC ?= torch==2.13.0
TORCH_PIP_ARGS ?=
STAMP := $(VENV)/.mde_ros-installed
export AMENT_PREFIX_PATH := $(abspath $(VENV))$(if $(AMENT_PREFIX_PATH),:$(AMENT_PREFIX_PATH))
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install demo test lint format bench data clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# Runtime (requirements*.txt, no torch) + the [export] and [train] extras + test tools.
$(STAMP): $(PY) requirements.txt requirements-nodeps.txt requirements-dev.txt setup.py
	$(PY) -m pip install -q $(TORCH_PIP_ARGS) "$(TORCH_SPEC)"
	$(PY) -m pip install -q -r requirements.txt -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps -r requirements-nodeps.txt
	$(PY) -m pip install -q ".[export,train]"
	rm -rf build *.egg-info
	touch $(STAMP)

# The package itself is re-installed every time (2 s) so that the installed copy,
# its console scripts and share/mde_ros (launch, config, package.xml) match the source.
install: $(STAMP)
	$(PY) -m pip install -q --no-deps .
	rm -rf build *.egg-info

data: install
	$(PY) -c "from mde_ros.data.visp import fetch_mbt_depth; print(fetch_mbt_depth())"

demo: install data
	$(VENV)/bin/mde-ros demo --output out/demo

test: install
	$(PY) -m ruff check .
	$(PY) -m pytest -q

bench: install
	$(VENV)/bin/mde-ros bench --model default --input-size 252 --frames 50

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: install
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

clean:
	rm -rf build *.egg-info out .pytest_cache
