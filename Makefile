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
# The API (granian, `python -m ticketing_orders.server`) listens on the loopback interface only; PORT=8000 moves
# it, GRANIAN_HOST=0.0.0.0 opens it to the network (ticketing_orders/server.py's own default, the container's).
export PORT ?= 3000
export GRANIAN_HOST ?= 127.0.0.1
export GRANIAN_PORT ?= $(PORT)
# The worker's /metrics and /healthz (port 9102), on the loopback interface too.
export WORKER_METRICS_HOST ?= 127.0.0.1

.PHONY: run test lint setup clean bench browser netfilter lock lock-check mutation

# The venv is installed from the dev lock. In hash-checking mode pip refuses any file, a dependency's
# included, that the lock does not name with its hash; without --no-deps it also checks that every
# dependency is in the lock, so a lock missing one fails here instead of importing a stray version.
# (A package dropped from the lock stays in an older venv: `make clean setup` starts afresh.)
$(VENV)/.installed: requirements-dev.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements-dev.lock
	touch $@

setup: $(VENV)/.installed

## lock: compile requirements.lock, requirements-mongodb.lock and requirements-dev.lock (exact versions
## with hashes) from the ranges in requirements*.txt, keeping the pins that still fit; run it after
## editing a range. LOCK_ARGS=--upgrade takes the newest releases the ranges admit,
## LOCK_ARGS="--upgrade-package django" one package's.
lock: setup
	$(BIN)/python -m devtools.locks write $(LOCK_ARGS)

## lock-check: fails when a lock no longer matches its inputs (.ci/run runs it before the tests)
lock-check: setup
	$(BIN)/python -m devtools.locks check

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

# The alert rule tests run Debian's promtool and prometheus (deploy/prometheus/): installed the same way.
.PHONY: prometheus
prometheus:
	@command -v promtool >/dev/null && command -v prometheus >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1 || \
	     (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null)) ; \
	  else echo "the alert tests need promtool and prometheus on PATH: apt-get install prometheus" >&2; exit 1; fi; }

# The AsyncAPI project's parser for the events document (tests/contract): npm ci from the committed
# lock with the machine's Node, bounded, and again only when the lock changes.
CONTRACT := tests/contract
$(CONTRACT)/node_modules/.installed: $(CONTRACT)/package-lock.json
	@command -v npm >/dev/null || { echo "the AsyncAPI check needs Node 20+ and npm (apt-get install nodejs npm)" >&2; exit 1; }
	timeout 300 npm ci --prefix $(CONTRACT) --no-audit --no-fund --ignore-scripts --loglevel=error
	touch $@

# The blackhole tests (tests/reliability/test_gray_failures.py) make network namespaces (iproute2's `ip`)
# and drop packets in them with iptables: install iptables when it is missing and we may (root, as in
# CI); otherwise those tests skip and say why.
netfilter:
	@{ command -v iptables && command -v ip; } >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iptables iproute2 >/dev/null 2>&1 || \
	     (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iptables iproute2 >/dev/null)) ; \
	  else echo "the blackhole tests need iptables (apt-get install iptables); they will be skipped" >&2; fi; }

## test: lint (ruff, and import-linter's layer contracts in pyproject.toml), then the whole suite (SQLite, or the database DATABASE_URL names)
## on TEST_WORKERS processes (pytest-xdist; TEST_WORKERS=0 runs it in this one)
# Four on two cores: the fault scenarios mostly wait (on dark links, timeouts, restarts), so the unit
# tests run beside them; conftest.py puts the scenarios first, and --maxschedchunk 1 hands every
# process one test at a time (xdist's default hands each a fixed run of about a sixteenth of the
# suite at the start: every fault scenario went to the same process, one after another; times:
# docs/testing.md).
TEST_WORKERS ?= 4
test: setup browser netfilter prometheus $(CONTRACT)/node_modules/.installed
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/pytest -n $(TEST_WORKERS) --maxschedchunk 1

## mutation: mutmut on orders/services.py, tickets_replica/services.py and messaging/relay.py with the apps'
## tests ([tool.mutmut] in pyproject.toml), one mutant at a time, from a fresh mutants/ (mutmut keeps its
## copy of a file it finds there, so a changed test would not be seen); MUTANTS="orders.services.*" picks
## some. The pattern also makes the baseline run only the tests that reach the mutated functions.
## The survivors are listed at the end; docs/testing.md has the figures and how to run 5a7fa8a the same way.
MUTANTS ?= *
mutation: setup
	rm -rf mutants
	$(BIN)/mutmut run --max-children 1 "$(MUTANTS)"
	$(BIN)/mutmut results

## bench: every benchmark on SQLite and PostgreSQL (BENCH_POSTGRES_URL, used only to create and drop
## bench_hb_* databases), the HTTP ones and the flash sale also on BENCH_BASELINE's server (default
## 5a7fa8a, a temporary git worktree; a directory or `none` also do); rewrites docs/benchmarks.md and
## docs/benchmarks.png. Needs wrk and valgrind (installed with apt-get when missing and running as root).
## BENCH_ARGS passes options, e.g. BENCH_ARGS=--quick.
BENCH_POSTGRES_URL ?= postgres://postgres@127.0.0.1:5432/postgres
bench: setup
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && (apt-get install -y wrk || (apt-get update && apt-get install -y wrk)); } \
		|| { echo "make bench needs wrk: apt-get install wrk"; exit 1; }
	@command -v callgrind_control >/dev/null || { [ "$$(id -u)" = 0 ] && (apt-get install -y valgrind || (apt-get update && apt-get install -y valgrind)); } \
		|| { echo "make bench needs valgrind: apt-get install valgrind"; exit 1; }
	$(BIN)/python -m bench --postgres-url "$(BENCH_POSTGRES_URL)" $(BENCH_ARGS)

clean:
	rm -rf $(VENV) data staticfiles $(CONTRACT)/node_modules
