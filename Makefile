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

# Upstream Pointcept (docs/pointcloud.md) in its own environment: POINTCEPT_ROOT is a Pointcept checkout.
# Its CUDA-only extensions come from the import stand-ins in tests/pointcept_stubs/ (this job only).
PC_VENV := .venv-pointcept
PC_STAMP := $(PC_VENV)/.ffnet-installed
PC_TESTS := tests/upstream_pointcept \
	tests/test_pointcloud.py::test_plugin_registers_into_pointcept_when_importable

.PHONY: install-pointcept test-pointcept
install-pointcept: $(PC_STAMP)

$(PC_STAMP): setup.cfg pyproject.toml scripts/install.sh
	bash scripts/install.sh --pointcept $(PC_VENV)
	touch $(PC_STAMP)

test-pointcept: $(PC_STAMP)
	@test -f "$(POINTCEPT_ROOT)/pointcept/__init__.py" || { \
	    echo "test-pointcept: set POINTCEPT_ROOT to a Pointcept checkout (got '$(POINTCEPT_ROOT)')"; exit 2; }
	PYTHONPATH="$(abspath $(POINTCEPT_ROOT)):$(CURDIR)/tests/pointcept_stubs" WANDB_MODE=disabled \
	    $(PC_VENV)/bin/python -m pytest $(PC_TESTS)
