# The two commands in the README: `make demo` and `make test`.
PY ?= python3
UV ?= uv
export MLFLOW_DISABLE_TELEMETRY=true
export BENTOML_DO_NOT_TRACK=True

.PHONY: setup setup-demo demo test lint bench serve

setup:  ## install uv (if missing), Python deps from the lock file, redis-server and chromium (Debian)
	@command -v $(UV) >/dev/null 2>&1 || $(PY) -m pip install --quiet uv
	@# --compile-bytecode: with PYTHONDONTWRITEBYTECODE set (it is here) no .pyc is ever written,
	@# so every process (each bentoml worker, notebook kernel, CLI) compiled mlflow, feast,
	@# bentoml and pandas from source again: ~8 s of CPU per start-up.
	$(UV) sync --frozen --all-extras --python 3.11 --compile-bytecode
	@command -v redis-server >/dev/null 2>&1 || (command -v apt-get >/dev/null 2>&1 && (apt-get update -qq && apt-get install -y -qq redis-server >/dev/null) || echo "redis-server not installed: Redis tests will be skipped")
	@# the console's browser tests: Debian's chromium and its driver (no browser download)
	@command -v chromedriver >/dev/null 2>&1 || (command -v apt-get >/dev/null 2>&1 && (apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null) || echo "chromium not installed: console browser tests will be skipped")

setup-demo:  ## uv (if missing) and only what the demo needs: the base dependencies and the compiled trees
	@command -v $(UV) >/dev/null 2>&1 || $(PY) -m pip install --quiet uv
	@# --inexact: a checkout that already has the extras (make setup) keeps them
	$(UV) sync --frozen --inexact --extra batch --python 3.11 --compile-bytecode

demo: setup-demo  ## generate data, resolve identities, build features, train, score, serve
	$(UV) run --frozen nextbest pipeline
	$(UV) run --frozen nextbest serve

test: setup  ## the whole test suite
	$(UV) run --frozen pytest -q --durations=15

lint:  ## ruff, and the import layers of docs/architecture.md (import-linter)
	$(UV) run --frozen ruff check . && $(UV) run --frozen ruff format --check .
	$(UV) run --frozen lint-imports

bench: setup
	$(UV) run --frozen nextbest bench
