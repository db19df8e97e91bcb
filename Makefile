# Two commands do everything on a fresh clone:
#   make lab    run the whole workbook (synthetic data unless data/oxford-iiit-pet exists)
#   make test   run every test, the seven notebooks included
# Both create .venv on first use and install labkit into it.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: lab test install clean

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[test]"
	touch $@

install: $(INSTALLED)

lab: $(INSTALLED)
	$(BIN)/python -m labkit workbook

# The notebooks run in the smoke profile with LABKIT_HOME pointing at build/test-home, so their
# data, checkpoints and figures never overwrite the ones in data/, checkpoints/ and reports/.
test: $(INSTALLED)
	MPLBACKEND=Agg $(BIN)/python -m pytest tests
	rm -rf build/test-home && mkdir -p build/test-home
	MPLBACKEND=Agg LABKIT_HOME=$(CURDIR)/build/test-home LABKIT_PROFILE=smoke LABKIT_HEADLESS=1 \
		$(BIN)/python -m pytest --nbval-lax --nbval-current-env -p no:cacheprovider notebooks

clean:
	rm -rf $(VENV) build data/cache reports/notebooks
