# gpuhub — two commands: `make demo` and `make test`.
# Debian's python3 where present: single-user servers run as the users' own accounts,
# which must be able to execute the interpreter their environment (server-env) is made
# from (a pyenv under /root is not).
PYTHON ?= $(shell [ -x /usr/bin/python3 ] && echo /usr/bin/python3 || echo python3)
VENV   := .venv
BIN    := $(VENV)/bin
PROXY  := hub_config/proxy/node_modules/.bin/configurable-http-proxy
export PATH := $(CURDIR)/$(BIN):$(CURDIR)/hub_config/proxy/node_modules/.bin:$(PATH)

.PHONY: demo test test-fast install system-deps server-env image clean labextension docs dist

## Debian packages the tests and the demo need (list: .ci/apt-packages); installed only when missing.
system-deps:
	@missing=$$(for p in $$(grep -v '^#' .ci/apt-packages); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "please install: $$missing (sudo apt-get install $$missing)"; exit 1; fi; \
	  echo "installing Debian packages: $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

# editable_mode=lenient: setuptools' supported mode (compat, a static path, is deprecated
# and printed a banner at every install); its import-hook finder adds a few milliseconds
# to each console script's start-up (see `python -X importtime -c "import gpuhub"`)
$(VENV)/.installed: pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	@# (its one notice, "Editable installation… folders with the same name as your package",
	@# is what we want: the checkout is the package)
	PYTHONWARNINGS="ignore:Editable installation" $(BIN)/pip install -q -e '.[test,docs]' \
	  --config-settings editable_mode=lenient
	touch $@

$(PROXY): hub_config/proxy/package.json hub_config/proxy/package-lock.json
	cd hub_config/proxy && npm ci --no-audit --no-fund --loglevel=error
	touch $@

## The JupyterLab extension (labextension/): node_modules (cached in labextension/node_modules,
## gitignored), the TypeScript and the prebuilt extension (labextension/build), then copied with
## its server-extension config into the venv (LABEXT_PREFIX; the data files that `pip install .`
## puts there, which an editable install leaves out). Each step only when its inputs changed.
LABEXT        := labextension
LABEXT_PREFIX ?= $(VENV)
LABEXT_BUILT  := $(LABEXT)/build/gpuhub-labextension/package.json
LABEXT_SRC    := $(wildcard $(LABEXT)/src/*.ts $(LABEXT)/src/*/*.ts $(LABEXT)/style/* $(LABEXT)/schema/*.json) $(LABEXT)/package.json $(LABEXT)/tsconfig.json

$(LABEXT)/node_modules/.installed: $(LABEXT)/package.json $(LABEXT)/yarn.lock $(VENV)/.installed
	cd $(LABEXT) && $(abspath $(BIN))/jlpm install --immutable >/dev/null
	touch $@

$(LABEXT_BUILT): $(LABEXT)/node_modules/.installed $(LABEXT_SRC)
	cd $(LABEXT) && PATH=$(abspath $(BIN)):$$PATH jlpm build

$(LABEXT_PREFIX)/.gpuhub-labextension: $(LABEXT_BUILT) $(LABEXT)/install.py $(LABEXT)/install.json $(LABEXT)/jupyter-config/server-config/gpuhub.json
	$(BIN)/python $(LABEXT)/install.py --prefix $(LABEXT_PREFIX)
	touch $@

labextension: $(VENV)/.installed $(LABEXT_PREFIX)/.gpuhub-labextension


## As root: the servers' environment — the Python the users' accounts execute for their
## servers, outside the checkout (which may be private, e.g. under /root): a world-readable venv
## with the hub venv's versions of JupyterHub and JupyterLab in /opt/gpuhub/server-envs/KEY
## (KEY: a hash of those versions, so checkouts share it and never clash), with the lab panel
## (gpuhub.lab and the built extension). Built once (~40 s), then a no-op; nothing to do
## for a hub that does not run as root. See spawner/serverenv.py.
## Beside it, once: code-server (VS Code in the sessions) from npm, ~0.4 GB, 1-4 min to build
## its native modules, in ROOT/code-server-VERSION-nodeN (spawner/codeserver.py).
## (GPUHUB_SERVER_ENVS=DIR make install: another root, which the demo reads too)
GPUHUB_SERVER_ENVS ?= /opt/gpuhub/server-envs
server-env: $(VENV)/.installed
	@$(BIN)/python spawner/serverenv.py --root "$(GPUHUB_SERVER_ENVS)" install --with-code-server >/dev/null


install: system-deps $(VENV)/.installed $(PROXY) labextension server-env
	@# byte-compile the checkout (pip does this for non-editable installs): without
	@# .pyc files every p-command start recompiles its modules (~90 ms here) when the
	@# environment sets PYTHONDONTWRITEBYTECODE
	@$(BIN)/python -m compileall -q gpuhub gpu_allocator spawner vfolder_manager >/dev/null

## dist/: the sdist and a wheel with the prebuilt JupyterLab panel, its server-extension
## config and the compiled p-command core (the wheel is built from the sdist, as pip would).
dist: $(VENV)/.installed labextension
	@rm -rf dist && mkdir -p build && echo "gpuhub: building the sdist and the wheel (log: build/dist.log)"
	@$(BIN)/python -m build --outdir dist . >build/dist.log 2>&1 || { tail -n 30 build/dist.log; exit 1; }
	@ls -l dist

## The single-user image gpuhub/singleuser:latest, built locally (no registry needed).
image: install
	bash spawner/image/build.sh

## Start a real JupyterHub on http://127.0.0.1:8000 with the allocator and the mock GPU pool.
## Sessions run in Docker when an engine answers (the image is built first), else as processes.
demo: install
	@if docker info >/dev/null 2>&1; then $(MAKE) --no-print-directory image; \
	  else echo "gpuhub: no Docker engine reachable: sessions will run as local processes"; fi
	@echo "gpuhub demo: open http://127.0.0.1:8000 (any user name and password; user 'admin' is a hub admin)"
	$(BIN)/jupyterhub -f hub_config/jupyterhub_config.py

## The documentation (docs/source, Sphinx + MyST) as HTML in docs/_build/html; any
## warning is an error; -E: read every page again, since the generated pages
## change with the code, not with their sources. The configuration, REST API and metrics references are
## generated from the code.
docs: $(VENV)/.installed
	$(BIN)/sphinx-build -E -W --keep-going -n -q -b html docs/source docs/_build/html
	@echo "gpuhub docs: docs/_build/html/index.html"

## Install everything, build the docs and run the whole test suite.
## (starts a Docker engine when none runs, and stops what it started)
## (and PostgreSQL, for the store tests that run against both SQLite and PostgreSQL)
test: install docs
	bash .ci/dockerd start
	pg=$$(bash .ci/postgres start) || exit 1; \
	GPUHUB_TEST_POSTGRES_URL=$$pg $(BIN)/python -m pytest -ra; rc=$$?; \
	bash .ci/postgres stop; bash .ci/dockerd stop; exit $$rc

## The fast tier, for the edit-test loop: every test that starts no hub, service, agent,
## Docker engine or browser (pytest markers e2e and browser, tests/conftest.py), in a few
## minutes; the store tests on SQLite and PostgreSQL, as in make test.
test-fast: install
	pg=$$(bash .ci/postgres start) || exit 1; \
	GPUHUB_TEST_POSTGRES_URL=$$pg $(BIN)/python -m pytest -ra -m "not e2e and not browser"; rc=$$?; \
	bash .ci/postgres stop; exit $$rc

clean:
	rm -rf $(VENV) docs/_build hub_config/proxy/node_modules data $(LABEXT)/node_modules $(LABEXT)/build $(LABEXT)/lib
