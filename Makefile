# Two commands on a fresh machine (see README): `make demo` and `make test`.
# Both create ./.venv on first use; torch==2.13.0 (CPU) is installed before anything that needs it.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
STAMP := $(VENV)/.aquacollect-installed

.PHONY: demo test bench lint install clean lerobot-interop

$(STAMP): pyproject.toml .ci/requirements-interop.txt
	$(PY) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[test,ray]"
	# bench/bench_read.py's TorchRL baseline; these pins install against torch 2.13.0 without changing it
	$(PIP) install -q torchrl==0.14.1 tensordict==0.14.3
	# real libraries on the other side of the interop tests, installed without their pinned deps
	$(PIP) install -q --no-deps --ignore-requires-python -r .ci/requirements-interop-nodeps.txt
	$(PIP) install -q -r .ci/requirements-interop.txt
	# Debian's chromium renders `aquacollect report` pages in the tests (installed when absent and root)
	command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } || \
		echo "chromium not installed (needs root + apt-get): tests/test_report_html.py will skip"
	touch $@

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/aquacollect record CartPole-v1 --steps 10000 --out data/cartpole --overwrite

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(PIP) install -q -e ".[bench]"
	$(BIN)/python bench/bench_record.py

# The real lerobot 0.4.4 (the last release for Python 3.11) opens our LeRobot export and we read a dataset it
# wrote. It pins its own torch, so it gets its own venv (about 8 GB, several minutes): not part of `make test`.
LEROBOT_VENV ?= .venv-lerobot
$(LEROBOT_VENV)/.lerobot-installed:
	$(PY) -m venv $(LEROBOT_VENV)
	$(LEROBOT_VENV)/bin/python -m pip install -q --upgrade pip
	$(LEROBOT_VENV)/bin/python -m pip install -q lerobot==0.4.4
	touch $@

lerobot-interop: $(STAMP) $(LEROBOT_VENV)/.lerobot-installed
	LEROBOT_PYTHON=$(abspath $(LEROBOT_VENV))/bin/python $(BIN)/python -m pytest -q -rs tests/interop_lerobot

lint: $(STAMP)
	$(BIN)/ruff check gym_aquacollect tests bench examples

clean:
	rm -rf $(VENV) data
