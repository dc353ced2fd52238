# make serve: venv + install + demo models + serve on 127.0.0.1:8000.  make test: venv + install + the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MODELS ?= models

.PHONY: serve test bench install clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

serve: $(STAMP)
	$(BIN)/slotserve demo-models $(MODELS)
	$(BIN)/slotserve serve --model-dir $(MODELS)

test: $(STAMP)
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python bench/request_path.py
	$(BIN)/python bench/load.py
	$(BIN)/python bench/churn.py
	$(BIN)/python bench/abuse.py

clean:
	rm -rf $(VENV) $(MODELS) .pytest_cache
