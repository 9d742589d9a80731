# returnrisk: `make demo` and `make test` work on a fresh clone. They build .venv themselves from
# the lock files (requirements*.lock, with hashes), using uv pinned and installed into .tools/.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PYTHON ?= python3
UV_VERSION := 0.13.8
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
BIN := $(VENV)/bin
LOWEST := .venv-lowest
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := true
export PYTHONHASHSEED := 0
# uv: the interpreter on this machine, never a downloaded one.
export UV_PYTHON := $(PYTHON)
export UV_PYTHON_DOWNLOADS := never
# pip prints this for index locations the machine configures but does not have.
PIPNOISE := grep -v "is ignored: it is neither" || true

.PHONY: demo test test-fast test-lowest lint typecheck format bench lock venv venv-dev clean

$(UV):
	@echo "installing uv $(UV_VERSION) into $(TOOLS) (one time) ..."
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)" 2>&1 | { $(PIPNOISE); }

$(BIN)/python: | $(UV)
	$(UV) venv --quiet $(VENV)

# Runtime dependencies only (no test tools, no browser driver), exactly as locked, with hashes;
# then the project itself (editable, no dependencies of its own).
venv: $(BIN)/python
	@VIRTUAL_ENV=$(VENV) $(UV) pip install --quiet --require-hashes -r requirements.lock
	@VIRTUAL_ENV=$(VENV) $(UV) pip install --quiet --no-deps -e .

# Runtime + the dev extra (pytest, ruff, playwright, ...): the environment becomes exactly the lock.
venv-dev: $(BIN)/python
	@VIRTUAL_ENV=$(VENV) $(UV) pip sync --quiet --require-hashes requirements-dev.lock
	@VIRTUAL_ENV=$(VENV) $(UV) pip install --quiet --no-deps -e .

demo: venv
	$(BIN)/returnrisk demo --workdir demo

test: venv-dev
	$(BIN)/python -m pytest -q

test-fast: venv-dev
	$(BIN)/python -m pytest -q -m "not slow and not browser"

# The fast suite on the lowest versions pyproject.toml declares for the direct dependencies:
# proves the floors are true. Its own virtualenv, resolved fresh (not from the lock).
test-lowest: $(UV)
	@rm -rf $(LOWEST)
	$(UV) venv --quiet $(LOWEST)
	VIRTUAL_ENV=$(LOWEST) $(UV) pip install --quiet --resolution lowest-direct -e '.[dev]'
	$(LOWEST)/bin/python -c "import importlib.metadata as m; print('lowest:', ', '.join(f'{p} {m.version(p)}' for p in ('pandas','numpy','lightgbm','scikit-learn','mlflow','shap','optuna','pyarrow','fastapi','typer')))"
	$(LOWEST)/bin/python -m pytest -q -m "not slow and not browser" -p no:cacheprovider

# The lock: requirements.lock (runtime) and requirements-dev.lock (runtime + dev extra), with
# hashes. After changing dependencies in pyproject.toml run `make lock` (keeps every locked
# version that still fits) or `make lock UPGRADE=1` (newest versions the constraints allow),
# run `make test test-lowest`, and commit both files.
COMPILE = $(UV) pip compile pyproject.toml --quiet --universal --python-version 3.11 \
	--generate-hashes --custom-compile-command "make lock" $(if $(UPGRADE),--upgrade,)
lock: $(UV)
	$(COMPILE) -o requirements.lock
	$(COMPILE) --extra dev -o requirements-dev.lock

lint: venv-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# mypy over the package as installed (a plain copy in .mypy-site): the stage folders become
# returnrisk.features / .train / .serve only through pyproject's package-dir.
typecheck: venv-dev
	@rm -rf .mypy-site
	@VIRTUAL_ENV=$(VENV) $(UV) pip install --quiet --no-deps --target .mypy-site .
	cd .mypy-site && ../$(BIN)/mypy --config-file ../pyproject.toml --python-executable ../$(BIN)/python -p returnrisk

format: venv-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: venv-dev
	@for b in benchmarks/bench_*.py; do echo "== $$b" >&2; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) $(LOWEST) $(TOOLS) .mypy-site demo mlflow.db mlruns .pytest_cache
