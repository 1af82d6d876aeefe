# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test browser bench chaos clean

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml tools/pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10) and "imsguard needs Python 3.10 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps \
		--config-settings editable_mode=compat -e . -e tools
	touch $@

demo: $(STAMP)
	$(BIN)/imsguard invoke tests/events/cts_create_image.json --fake

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest

# The HTML report's browser test (tests/test_report_browser.py) drives Debian's chromium;
# Playwright's own browser downloads are not used. Without chromium that test skips.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@if [ -x /usr/bin/chromium ]; then echo "make browser: /usr/bin/chromium is installed"; else \
	  echo "make browser: downloads and installs Debian's chromium package and the libraries it"; \
	  echo "  needs with apt-get (a few hundred MB from the Debian mirrors) as /usr/bin/chromium"; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; fi

bench: $(STAMP)
	$(BIN)/python bench/cold_start.py
	$(BIN)/python bench/sweep.py --images 1000
	$(BIN)/python bench/sweep.py --images 10000
	$(BIN)/python bench/memory.py --images 10000
	$(BIN)/python bench/org_scale.py

chaos: $(STAMP)
	IMSGUARD_CHAOS_IMAGES=5000 $(BIN)/pytest -s tests/test_chaos.py

clean:
	rm -rf $(VENV) build dist *.egg-info function/*.egg-info tools/*.egg-info .pytest_cache .ruff_cache
