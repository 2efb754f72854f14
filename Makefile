# Two commands set everything up on a fresh machine (Python >= 3.11 on PATH as python3):
#   make demo   creates .venv, installs counterscan, runs the demo on the bundled data
#   make test   creates .venv, installs counterscan with its dev tools, runs ruff, mypy and pytest
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

.PHONY: install demo test lint browser fonts
install: $(BIN)/.installed

# The HTML report test renders in Debian's chromium; install it when we may (root with apt-get),
# otherwise that one test skips with its reason.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium) \
		>/dev/null 2>&1 || echo "chromium not installed: the browser test will skip"; }

# The OCR tests render Chinese counterfeit words ("高仿") with Debian's WenQuanYi Zen Hei font;
# installed the same way, otherwise those tests skip with their reason.
fonts:
	@[ -f /usr/share/fonts/truetype/wqy/wqy-zenhei.ttc ] || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		fonts-wqy-zenhei fonts-dejavu-core) >/dev/null 2>&1 || echo "no CJK font installed: the OCR rendering tests will skip"; }

demo: $(BIN)/.installed
	rm -rf .counterscan-demo
	$(BIN)/counterscan --home .counterscan-demo demo

lint: $(BIN)/.installed
	$(BIN)/ruff check src tests scripts
	$(BIN)/ruff format --check src tests scripts
	$(BIN)/mypy

test: lint browser fonts
	$(BIN)/pytest -q
