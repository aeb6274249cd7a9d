# Two commands on a fresh machine: `make demo` and `make test`.
# Both create (or reuse) .venv and install the package with pinned deps.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
CONSTRAINTS := requirements/constraints.txt
STAMP := $(VENV)/.installed
# BoxMOT's peer trackers (tracker=dict(type='BoxMOTByteTrack', ...)): installed without its declared
# dependencies (it pins opencv-python<5 and pandas<3, which its trackers do not import); the
# `trackers` extra holds what they do import.
BOXMOT := boxmot==25.0.0
# Each step of `make test` / `make demo` appends "STEP: N s" here; `make test` prints the split and clears it.
TIMING := $(VENV)/.timing
NOW = $$(date +%s)
SYSTEM_PKGS := dataset-fashion-mnist ffmpeg

.PHONY: install demo train-demo test test-fast lint data-packages clean mmdet

$(STAMP): setup.cfg pyproject.toml $(CONSTRAINTS)
	@t0=$(NOW); test -x $(PY) || $(PYTHON) -m venv $(VENV); \
	echo "$(PIP) install -c $(CONSTRAINTS) -e '.[dev,runtimes,docs,trackers,sweep]' && $(PIP) install --no-deps $(BOXMOT)"; \
	$(PIP) install --quiet --progress-bar off -c $(CONSTRAINTS) -e '.[dev,runtimes,docs,trackers,sweep]' && \
	$(PIP) install --quiet --progress-bar off -c $(CONSTRAINTS) --no-deps $(BOXMOT) && \
	touch $(STAMP) && echo "install: $$(( $(NOW) - t0 )) s" | tee -a $(TIMING)

# System packages (best effort: needs apt-get and root): real Fashion-MNIST images for the scene
# generator (else procedural sprites are used), and ffmpeg, which serves the local network streams
# the stream tests and benchmarks/multi_stream.py read (those tests are skipped without it).
data-packages:
	@missing=""; for p in $(SYSTEM_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		(apt-get install -y -q $$missing >/dev/null 2>&1 || \
		 (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q $$missing >/dev/null 2>&1)) || \
		echo "note: could not install$$missing (Fashion-MNIST: procedural sprites are used; ffmpeg: stream tests skip)"; \
	else echo "note:$$missing not installed (Fashion-MNIST: procedural sprites are used; ffmpeg: stream tests skip)"; fi

install: $(STAMP) data-packages

# MMDetection 3.3.0 with mmcv 2.1.0 compiled for this torch (the first run builds
# mmcv, about 9 minutes on 2 cores; the wheel is cached outside the repo).
mmdet: $(STAMP)
	@t0=$(NOW); PYTHON=$(PY) tools/install_mmdet.sh && \
	echo "mmdet (mmcv build or cached wheel): $$(( $(NOW) - t0 )) s" | tee -a $(TIMING)

# The main job: the released default 3-task model (weights/), evaluated, running the
# budgeted tracking demo on a held-out video; outputs under work_dirs/demo/.
# (`mtmnv3 demo CONFIG CHECKPOINT --source ...` runs the live demo instead.)
demo: install
	@t0=$(NOW); $(VENV)/bin/mtmnv3 demo; rc=$$?; echo "demo job: $$(( $(NOW) - t0 )) s" >> $(TIMING); \
	echo "time split of this make demo:"; sed 's/^/  /' $(TIMING); rm -f $(TIMING); exit $$rc

# Retrain the released model from scratch with the same recipe (about two hours on
# 2 cores) and compare it with its model card: work_dirs/train-demo/compare.md.
train-demo: install
	$(VENV)/bin/mtmnv3 demo --retrain --work-dir work_dirs/train-demo

# CI runs `make test`: lint (ruff check + ruff format --check) first, then every test.
# The tests run on every core (pytest-xdist; a file's tests stay on one worker, so
# its module fixtures are built once); TEST_WORKERS=0 runs them in one process.
TEST_WORKERS ?= auto
test: lint mmdet
	@t0=$(NOW); $(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile; rc=$$?; \
	echo "tests: $$(( $(NOW) - t0 )) s" >> $(TIMING); \
	echo "time split of this make test:"; sed 's/^/  /' $(TIMING); rm -f $(TIMING); exit $$rc

test-fast: lint
	$(PY) -m pytest -m "not slow"

LINT_PATHS := mtmnv3 heads tools tests benchmarks configs

lint: install
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)

# The documentation site under site/ (mkdocs.yml); strict: a broken link or anchor fails.
.PHONY: docs
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) work_dirs .pytest_cache
