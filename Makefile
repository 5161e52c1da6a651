# Two commands do everything (see README):  make book   and   make test
# Each creates .venv when it is missing.
VENV    ?= .venv
PY      := $(VENV)/bin/python
PYTEST  := $(VENV)/bin/pytest
JB      := $(VENV)/bin/jupyter-book
export PMI_PROFILE ?= quick
# On the project's machines the real data sets lie in ../shared/data; elsewhere the loader
# downloads them (or reads PMI_DATA_DIR when you set it).
ifneq ($(wildcard ../shared/data/mnist.npz),)
export PMI_DATA_DIR ?= $(abspath ../shared/data)
endif

.PHONY: setup book test unit notebooks check-notebooks nbval build-book check-html screenshots benchmarks clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

setup: $(VENV)/.installed

## make book: set up, then build the book (executing every chapter) into _build/html
book: setup build-book
	@echo "Book built: open _build/html/index.html"

## make test: set up, then unit tests, notebook sync check, every notebook under nbval, book build -W
test: setup unit check-notebooks nbval build-book check-html

unit:
	$(PYTEST) tests -q

## make notebooks: (re)generate the reader notebooks notebooks/*.ipynb from book/*.md
notebooks:
	$(PY) scripts/make_notebooks.py

check-notebooks:
	$(PY) scripts/make_notebooks.py --check

nbval:
	$(PY) -m pytest --nbval-lax --nbval-current-env -p scripts.notebook_timing notebooks/ -q

build-book:
	$(PY) scripts/timed.py "jupyter-book build" $(JB) build . -W -n --keep-going

check-html:
	$(PY) scripts/check_html.py _build/html

screenshots: setup
	$(PY) scripts/screenshots.py _build/html screenshots

benchmarks: setup
	$(PY) benchmarks/train_throughput.py
	$(PY) benchmarks/verify.py

clean:
	rm -rf _build .jupyter_cache
