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
# The API listens on the loopback interface only; PORT=8000 moves it, GUNICORN_BIND=0.0.0.0:3000 opens it
# to the network (gunicorn.conf.py's own default, the container's).
export PORT ?= 3000
export GUNICORN_BIND ?= 127.0.0.1:$(PORT)
# The worker's /metrics and /healthz (port 9102), on the loopback interface too.
export WORKER_METRICS_HOST ?= 127.0.0.1

.PHONY: run test lint setup clean bench browser netfilter

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

setup: $(VENV)/.installed

## run: API on 127.0.0.1:$PORT (3000), event worker and an embedded nats-server, on SQLite in ./data
## (Ctrl-C stops the API and the worker, then nats-server; a process that fails stops all, non-zero)
run: setup
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0
	@# honcho exits 130/143 after passing on a Ctrl-C/SIGTERM (a clean stop), else with the first
	@# process's exit status.
	@$(BIN)/honcho start --procfile Procfile 2>&1; rc=$$?; \
	  if [ $$rc -eq 130 ] || [ $$rc -eq 143 ]; then exit 0; else exit $$rc; fi

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

# The blackhole tests (tests/reliability/test_gray_failures.py) make network namespaces (iproute2's `ip`)
# and drop packets in them with iptables: install iptables when it is missing and we may (root, as in
# CI); otherwise those tests skip and say why.
netfilter:
	@{ command -v iptables && command -v ip; } >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iptables iproute2 >/dev/null 2>&1 || \
	     (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iptables iproute2 >/dev/null)) ; \
	  else echo "the blackhole tests need iptables (apt-get install iptables); they will be skipped" >&2; fi; }

## test: lint, then the whole suite (SQLite, or the database DATABASE_URL names)
test: setup browser netfilter
	$(BIN)/ruff check .
	$(BIN)/pytest

## bench: every benchmark on SQLite and PostgreSQL (BENCH_POSTGRES_URL, used only to create and drop
## bench_hb_* databases); rewrites docs/benchmarks.md and docs/benchmarks.png. Needs wrk (installed with
## apt-get when missing and running as root). BENCH_ARGS passes options, e.g. BENCH_ARGS=--quick.
BENCH_POSTGRES_URL ?= postgres://postgres@127.0.0.1:5432/postgres
bench: setup
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && (apt-get install -y wrk || (apt-get update && apt-get install -y wrk)); } \
		|| { echo "make bench needs wrk: apt-get install wrk"; exit 1; }
	$(BIN)/python -m bench --postgres-url "$(BENCH_POSTGRES_URL)" $(BENCH_ARGS)

clean:
	rm -rf $(VENV) data staticfiles
