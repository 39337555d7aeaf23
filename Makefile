# gradekit — everything starts here. `make demo` and `make test` work on a fresh machine:
# they create .venv/, install the project, start a Docker engine when the machine allows
# it (root on Debian), build the grading image, and run.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: venv docker browser demo test test-fast bench templates clean

venv: $(STAMP)

# The venv is also where the process sandbox's kernels run: it gets the grading image's
# package list (scripts/image/requirements*.txt), so `gradekit check` and grading agree.
$(STAMP): pyproject.toml scripts/image/requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,ray]' -r scripts/image/requirements.txt
	touch $(STAMP)

# The light grading image (no torch) serves the tests and the example assignment; the full
# image (torch 2.14.1) is built on first use by an assignment that needs torch, or with
# `gradekit image build`.
docker:
	bash scripts/ensure-docker.sh --light

demo: venv
	@bash scripts/ensure-docker.sh --light || echo "make demo: no Docker engine; grading with the process sandbox"
	$(VENV)/bin/gradekit grade assignments/example/submissions --assignment example --out demo-out --workers 2 --quiet; \
	  rc=$$?; echo; echo "Open the feedback page of a submission: $$(ls -d $(CURDIR)/demo-out/*/feedback.html | head -1)"; \
	  echo "(one per submitter under demo-out/; the class's scores are in demo-out/gradebook.csv)"; exit $$rc

# The HTML feedback tests open the page in Debian's headless Chromium.
browser:
	bash scripts/ensure-chromium.sh

test: venv docker browser
	$(PY) -m pytest -q tests

test-fast: venv
	$(PY) -m pytest -q tests -m "not docker"

bench: venv
	$(PY) bench/bench_reference.py
	$(PY) bench/bench_grading.py

templates: venv
	for a in assignments/*/assignment.toml; do id=$$(basename $$(dirname $$a)); $(VENV)/bin/gradekit assign $$id || exit 1; done

clean:
	rm -rf demo-out .pytest_cache
