# The two commands of the README: `make run` and `make test`. Everything else is set up by them.
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)

# Development defaults; every one can be overridden from the environment.
export JWT_KEY ?= dev-only-jwt-key-change-me-0123456789abcdef
export DEV_NATS_PORT ?= 4322
export NATS_URL ?= nats://127.0.0.1:$(DEV_NATS_PORT)
export WEB_CONCURRENCY ?= 2

.PHONY: run test lint setup clean browser

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

setup: $(VENV)/.installed

## run: API on :3000, event worker and an embedded nats-server, on SQLite in ./data (Ctrl-C stops all)
run: setup
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0
	$(BIN)/honcho start --procfile Procfile 2>&1 || true

# The browser tests drive Debian's Chromium (never a browser build of Playwright's own): install it
# when it is missing and we may (root, as in CI); otherwise say what to install.
CHROMIUM_PATH ?= /usr/bin/chromium
export CHROMIUM_PATH
browser:
	@test -x $(CHROMIUM_PATH) || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1 || \
	     (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)) ; \
	  else echo "the browser tests need Chromium at $(CHROMIUM_PATH): apt-get install chromium (or set CHROMIUM_PATH)" >&2; exit 1; fi; }

## test: lint, then the whole suite (SQLite, or the database DATABASE_URL names)
test: setup browser
	$(BIN)/ruff check .
	$(BIN)/pytest

clean:
	rm -rf $(VENV) data staticfiles
