# Two commands from a fresh clone: `make serve` and `make test`. Everything else bootstraps itself.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: install install-dev browser serve test export bench clean

# Runtime only (what the service and the Docker image need): no torch. The layers extra
# (OpenCV, c2pa-python) serves the copy-move and Content Credentials layers.
$(VENV)/.runtime: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e ".[layers]"
	touch $@

# Runtime + training/export (torch==2.13.0 CPU) + Ray (span scan --ray) + layers + test tools.
$(VENV)/.dev: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e ".[train,ray,dev,layers]"
	touch $(VENV)/.runtime $@

install: $(VENV)/.runtime
install-dev: $(VENV)/.dev

serve: install
	$(BIN)/span serve --host $(HOST) --port $(PORT)

# The web page is tested in a real Chromium from Debian's packages (Playwright drives it; it never
# downloads a browser). Installed once when missing; if apt cannot, tests/e2e/test_web.py says it skipped.
browser:
	@command -v chromium >/dev/null 2>&1 || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	   -o DPkg::Lock::Timeout=300 --no-install-recommends chromium >/dev/null) || \
	  echo "warning: could not install chromium; the browser tests will be skipped"

test: install-dev browser
	$(BIN)/python -m pytest

export: install-dev
	$(BIN)/span export

# Speed and memory study (issue 6): rewrites the generated block of docs/performance.md.
# Run it on a quiet machine (about 11 min on 2 cores); every figure carries the load average.
bench: install-dev
	$(BIN)/span bench --out docs/performance.md

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
