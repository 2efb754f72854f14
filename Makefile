# Two commands set everything up on a fresh machine (Python >= 3.11 on PATH as python3):
#   make demo   creates .venv, installs counterscan, runs the demo on the bundled data
#   make test   creates .venv, installs counterscan with its dev tools, runs ruff, mypy and pytest
#   (make test-fast: the suite without slow and browser tests, for the edit-test loop)
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

.PHONY: install demo test test-fast lint browser fonts fuzz
install: $(BIN)/.installed

# The HTML report test and the review UI's browser tests run in Debian's chromium (the UI tests
# through Debian's chromedriver); install both when we may (root with apt-get), otherwise those
# tests skip with their reason.
browser:
	@{ command -v chromium && command -v chromedriver; } >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && \
		command -v apt-get >/dev/null 2>&1 && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq --no-install-recommends chromium chromium-driver) >/dev/null 2>&1 || \
		echo "chromium/chromedriver not installed: the browser tests will skip"; }

# The OCR tests render Chinese counterfeit words ("高仿") with Debian's WenQuanYi Zen Hei font;
# installed the same way, otherwise those tests skip with their reason.
fonts:
	@[ -f /usr/share/fonts/truetype/wqy/wqy-zenhei.ttc ] || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		fonts-wqy-zenhei fonts-dejavu-core) >/dev/null 2>&1 || echo "no CJK font installed: the OCR rendering tests will skip"; }

DEMO_HOME = .counterscan-demo
demo: $(BIN)/.installed
	rm -rf $(DEMO_HOME)
	$(BIN)/counterscan --home $(DEMO_HOME) demo
	$(BIN)/counterscan --home $(DEMO_HOME) export --format html --out $(DEMO_HOME)/report >/dev/null
	@key=$$($(BIN)/counterscan --home $(DEMO_HOME) members add demo-analyst --role analyst | tail -n 1); \
	echo; echo "Next:"; \
	echo "  HTML evidence report:  open file://$(CURDIR)/$(DEMO_HOME)/report/index.html in a browser"; \
	echo "  Review web UI:         $(BIN)/counterscan --home $(DEMO_HOME) serve   (leave it running)"; \
	echo "                         then open http://127.0.0.1:8080/review/ and sign in with the analyst key"; \
	echo "                         $$key"; \
	echo "  API docs (offline):    http://127.0.0.1:8080/docs"; \
	echo "  Record a verdict:      $(BIN)/counterscan --home $(DEMO_HOME) review decide LISTING_ID --verdict counterfeit --key $$key"

lint: $(BIN)/.installed
	$(BIN)/ruff check src tests scripts
	$(BIN)/ruff format --check src tests scripts
	$(BIN)/mypy

test: lint browser fonts
	$(BIN)/pytest -q

# The edit-test loop: the suite on SQLite without the tests marked slow or browser, on every core
# (pytest-xdist); no lint. About 80 s on 2 cores. `make test` stays what CI runs.
test-fast: $(BIN)/.installed
	$(BIN)/pytest -q -n auto -m "not slow and not browser and not postgres"

# The fuzz tests of the suite (uploads over HTTP, feed rows through ingest) with 10,000 cases each
# instead of 25, on SQLite; numbers land in fuzz-report.txt as they go. Takes about an hour.
fuzz: $(BIN)/.installed
	rm -f fuzz-report.txt
	COUNTERSCAN_FUZZ_EXAMPLES=10000 COUNTERSCAN_FUZZ_REPORT=fuzz-report.txt nice -n 10 \
		$(BIN)/pytest -q -s -p no:logging -p no:cacheprovider tests/test_fuzz.py -k sqlite
	cat fuzz-report.txt
