# Two commands on a fresh machine: `make demo` and `make test`. Both install into .venv/ first;
# the install is skipped when nothing it depends on changed since the last one.
VENV := .venv
STAMP := $(VENV)/.ffnet-installed

.PHONY: install demo test
install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml scripts/install.sh scripts/build_mmcv.sh
	bash scripts/install.sh $(VENV)
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/ffnet tables

test: $(STAMP)
	$(VENV)/bin/python -m pytest tests
