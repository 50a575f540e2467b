# The two commands: `make demo` and `make test`. Both set up .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: setup demo test test-postgres lint clean

$(STAMP): pyproject.toml client/pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Einmal needs Python 3.11 or newer (found " + sys.version.split()[0] + ")")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ./client -e '.[test,lint]'
	@touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/einmal serve --demo

# The suite runs in worker processes (pytest-xdist), one file per worker at a time (a file's
# servers and browser are shared by its tests): TEST_WORKERS=auto is one per CPU; TEST_WORKERS=0
# runs it in this one process. PYTEST_ARGS are added (a path, -k, -x ...).
TEST_WORKERS ?= auto
PYTEST := $(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile

test: setup
	$(PYTEST) $(PYTEST_ARGS)

# Lint and types: ruff with the project's configuration, mypy (strict on the kernel and the client).
# Then: every noqa / type: ignore says why after its code (ruff and mypy insist on the code only).
lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy
	@git ls-files -co --exclude-standard '*.py' \
	  | xargs -r grep -nE '# (noqa: [A-Z0-9, ]+|type: ignore\[[a-z, -]+\])\s*$$' \
	  && { echo "lint: the noqa / type: ignore above give no reason" >&2; exit 1; } || true

# The same suite against the local PostgreSQL (what CI runs in addition). Each worker has a
# database of its own beside the one named, created on first use (test_gw0, test_gw1, ...).
test-postgres: setup
	EINMAL_TEST_DATABASE_URL=$${EINMAL_TEST_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/test} $(PYTEST) $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .einmal .pytest_cache
