# make serve: venv + install + demo models + serve on 127.0.0.1:8000.  make test: venv + install + the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MODELS ?= models

.PHONY: serve test bench install clean docker-test chromium postgresql nginx cluster-up cluster-down

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

# demo models are written only under names $(MODELS) does not have yet: a model of yours is never overwritten
serve: $(STAMP)
	$(BIN)/slotserve demo-models $(MODELS)
	$(BIN)/slotserve serve --model-dir $(MODELS)

test: $(STAMP) chromium postgresql nginx
	$(BIN)/pytest

# the browser tests (tests/ui) drive Debian's chromium through Playwright (never `playwright install`): installed here
# when missing, with apt as root; otherwise say what to run
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" != 0 ]; then \
	    echo "make test: the browser tests need Debian's chromium; run 'sudo apt-get install -y chromium' (or make test as root)" >&2; \
	    exit 1; \
	  fi; \
	  echo "installing chromium (apt) for the browser tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	}

# the failover test (tests/cluster) puts Debian's nginx in front of the replicas, as deploy/local/cluster.sh does:
# installed here when missing, with apt as root; otherwise say what to run
nginx:
	@command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || { \
	  if [ "$$(id -u)" != 0 ]; then \
	    echo "make: the local cluster needs Debian's nginx; run 'sudo apt-get install -y nginx-light' (or nginx)" >&2; \
	    exit 1; \
	  fi; \
	  echo "installing nginx (apt) for the local cluster"; \
	  apt-get update -qq && { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light \
	    || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx; }; \
	}

# N replicas behind nginx on 127.0.0.1:8080, sharing one PostgreSQL (deploy/local/README.md); cluster-down stops them
N ?= 3
cluster-up: $(STAMP) postgresql nginx
	MODELS=$(MODELS) deploy/local/cluster.sh up $(N)

cluster-down:
	deploy/local/cluster.sh down

# the PostgreSQL state tests (tests/state) start a throwaway cluster with deploy/local/postgres.sh (Debian's initdb
# and pg_ctl): installed here when missing, with apt as root; otherwise say what to run
postgresql:
	@command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" != 0 ]; then \
	    echo "make: the PostgreSQL state tests need Debian's postgresql; run 'sudo apt-get install -y postgresql' (or make test as root)" >&2; \
	    exit 1; \
	  fi; \
	  echo "installing postgresql (apt) for the PostgreSQL state tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; \
	}

# build the CPU image and run it for real (installs docker.io/debootstrap, starts dockerd when needed)
docker-test: $(STAMP)
	$(BIN)/python docker/test.py

bench: $(STAMP) postgresql nginx
	$(BIN)/python bench/request_path.py
	$(BIN)/python bench/load.py
	$(BIN)/python bench/churn.py
	$(BIN)/python bench/abuse.py
	$(BIN)/python bench/cluster.py

# build and test artefacts only: never the model store ($(MODELS)) nor the state file (slotserve.db holds API keys)
clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build dist *.egg-info
