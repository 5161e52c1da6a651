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

# Every step of make test prints one line with its wall time (scripts/timed.py)
TIMED   := $(PY) scripts/timed.py

# Notebooks execute with the inline backend, whatever MPLBACKEND the shell has (Agg shows no figures).
NB_ENV  := MPLBACKEND=module://matplotlib_inline.backend_inline

.PHONY: setup book test unit unit-pythons check-code notebooks check-notebooks nbval check-outputs \
	build-book publish-assignments check-html check-browser lint-workflows wheel-test gpu-check screenshots benchmarks clean \
	assignments check-assignments grade student-book

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(TIMED) "install (pip install --no-compile -e .[dev])" $(PY) -m pip install --quiet --no-compile -e ".[dev]"
	$(TIMED) "byte-compile the installed packages (every core)" $(PY) scripts/byte_compile.py
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

setup: $(VENV)/.installed

## make book: set up, then build the book (executing every chapter not in the cache) into _build/html
book: setup build-book
	@echo "Book built: open _build/html/index.html"

## make test: set up, then everything a reader meets, each chapter executed once:
##   unit tests (this Python, then 3.12 / 3.10 where available), the chapters' static check,
##   reader notebooks up to date, nbval on them (keeping the outputs), their outputs checked,
##   the book built from those outputs with -W, the HTML and the browser checks, the
##   publishing workflow linted.  nbval runs the notebooks from the package's wheel in a fresh
##   environment outside the repository (make wheel-test alone: results + the chapters reading them)
test: setup unit unit-pythons check-code check-notebooks check-assignments nbval check-outputs build-book \
	publish-assignments check-html check-browser lint-workflows

# the unit tests on every core (pytest-xdist; each test file on one worker, so a file's module
# fixtures are built once); plain `pytest tests` runs them in one process
XDIST   := -n logical --maxprocesses 4 --dist loadfile

unit:
	$(TIMED) "unit tests" $(PYTEST) tests -q $(XDIST)

unit-pythons:
	$(TIMED) "unit tests on other Pythons" bash scripts/unit_pythons.sh

check-code:
	$(TIMED) "chapter code check" $(PY) scripts/check_chapter_code.py

## make notebooks: (re)generate the reader notebooks notebooks/*.ipynb from book/*.md
notebooks:
	$(PY) scripts/make_notebooks.py

check-notebooks:
	$(TIMED) "reader notebooks up to date" $(PY) scripts/make_notebooks.py --check

## make assignments: the otter-grader assignments built from the chapters into _build/assignments
## (student notebook, solution notebook and autograder per chapter; scripts/course.py)
assignments: setup
	$(PY) scripts/course.py assign

## make check-assignments: build them, then grade every solution (full marks) and every
## untouched student notebook (zero)
check-assignments:
	$(TIMED) "assignments" $(PY) scripts/course.py check

## make publish-assignments: the Colab student notebooks and their public checks into the built
## book (_build/html/assignments/), where the Colab notebooks fetch the checks
publish-assignments:
	$(TIMED) "publish assignments" $(PY) scripts/course.py publish _build/html

## make grade SUBMISSIONS=dir [ROSTER=roster.csv] [CONFIG=course.yml]: grade every
## STUDENT_ASSIGNMENT.ipynb in dir (each in a sandboxed subprocess with a timeout); feedback per
## submission, grades.csv and gradebook.csv (student x assignment, weighted) in dir/graded
grade:
	@test -n "$(SUBMISSIONS)" || { echo "make grade: set SUBMISSIONS=folder-of-notebooks (and ROSTER=roster.csv)"; exit 2; }
	$(PY) scripts/course.py grade $(SUBMISSIONS) $(if $(ROSTER),--roster $(ROSTER)) $(if $(CONFIG),--config $(CONFIG)) \
		$(if $(ASSIGNMENTS),--assignments $(ASSIGNMENTS))

## make student-book [PUBLISH=dir]: the student edition, built from a copy of the sources with every
## solution cut out, into _build/student/_build/html (PUBLISH: also copied there); its reader
## notebooks in _build/student/src/notebooks
student-book: setup
	$(PY) scripts/course.py student-book $(if $(PUBLISH),--publish $(PUBLISH))

## make nbval: the reader notebooks under nbval, run as a reader would: the package installed
## from its wheel into a fresh environment, the notebooks in a folder outside the repository;
## their outputs are kept in _build/reader_notebooks and in the book build's cache; one notebook
## per core at once (pytest-xdist, each notebook on one worker: --jobs, at most 4)
nbval:
	rm -rf _build/reader_notebooks
	$(NB_ENV) $(TIMED) "nbval (wheel, reader notebooks)" $(PY) scripts/wheel_test.py --nbval

check-outputs:
	$(TIMED) "notebook outputs" $(PY) scripts/check_outputs.py _build/reader_notebooks --expect $(words $(wildcard notebooks/*.ipynb))

build-book:
	$(NB_ENV) $(PY) scripts/timed.py "jupyter-book build" $(JB) build . --all -W -n --keep-going

check-html:
	$(TIMED) "HTML check" $(PY) scripts/check_html.py _build/html

check-browser:
	$(TIMED) "browser check" $(PY) scripts/browser_check.py _build/html _build/reader_notebooks

lint-workflows:
	$(TIMED) "workflow lint" $(PY) scripts/lint_workflows.py

wheel-test:
	$(PY) scripts/wheel_test.py

gpu-check:
	bash scripts/gpu_check.sh docs/gpu_check.log

screenshots: setup
	$(PY) scripts/screenshots.py _build/html screenshots

benchmarks: setup
	$(PY) benchmarks/train_throughput.py
	$(PY) benchmarks/verify.py
	$(PY) benchmarks/draws.py
	$(PY) benchmarks/di_walk.py
	$(PY) benchmarks/runner.py --quick
	$(PY) benchmarks/grading.py

clean:
	rm -rf _build .jupyter_cache
