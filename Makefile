# The two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_ENV := PORTAL_DEMO=1

.PHONY: demo install install-test test lint translations clean

# On a demo database made by an earlier version of the portal, the same steps migrate it and
# publish the shipped catalog's changes as the next notice version (--publish-changes).
demo: install
	$(DEMO_ENV) $(BIN)/portal db upgrade
	$(DEMO_ENV) $(BIN)/portal catalog load --by "make demo" --dpo-sign-off "Dana Novak (demo)" --publish-changes
	$(DEMO_ENV) $(BIN)/portal demo seed
	@echo "Open http://127.0.0.1:5000 and sign in as one of the demo people."
	$(DEMO_ENV) $(BIN)/portal run --host 127.0.0.1 --port 5000

# The virtual environment, the project and its compiled translations.
install: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	$(BIN)/portal translations compile
	touch $@

# What the tests need beyond the project: Chromium (Debian's), the test identity
# provider and axe-core (npm, from their lock files), PostgreSQL's server binaries.
install-test: install $(VENV)/.installed-test
$(VENV)/.installed-test: pyproject.toml tests/idp/package-lock.json tests/browser/package-lock.json
	$(BIN)/pip install --quiet -e ".[test]"
	bash tests/install-system-packages.sh
	cd tests/idp && npm ci --no-audit --no-fund --loglevel=error
	cd tests/browser && npm ci --no-audit --no-fund --loglevel=error
	touch $@

test: install-test
	$(BIN)/portal translations compile
	$(BIN)/pytest -n 2

lint: install-test
	$(BIN)/ruff check .
	$(BIN)/bandit --quiet --recursive portal --severity-level medium
	$(BIN)/portal translations check

translations: install
	$(BIN)/portal translations extract
	$(BIN)/portal translations update

clean:
	rm -rf $(VENV) tests/idp/node_modules tests/browser/node_modules
