# Every target sets up .venv on first use: a fresh clone needs only `make run` or `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9]*.ipynb))
# nbval compares stderr: the reference runs and the tests run without progress bars
QUIET  := EMBEVAL_PROGRESS=0 TQDM_DISABLE=1 HF_HUB_DISABLE_PROGRESS_BARS=1 PYTHONWARNINGS=ignore

.PHONY: help install run test test-unit test-slow test-browser lint regen bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-13s %s\n", $$1, $$2}'
	@echo "tiers (tests/conftest.py): unit, model, notebook; slow only with make test-slow"

install: $(STAMP) ## create .venv with the pinned requirements and the helpers package

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements-dev.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	$(BIN)/python -m pip freeze > $(VENV)/pip-freeze.txt
	touch $(STAMP)

run: install ## main job: every notebook with papermill on the embedded defaults, outputs in results/ (and an HTML copy of each executed notebook)
	@mkdir -p results/notebooks
	@for nb in $(NOTEBOOKS); do \
	  echo "== $$nb"; \
	  $(BIN)/papermill --kernel python3 "$$nb" "results/notebooks/$$(basename $$nb)" || exit 1; \
	  $(BIN)/jupyter nbconvert --to html --log-level WARN "results/notebooks/$$(basename $$nb)" || exit 1; \
	done
	@echo "results:"; find results -name metrics.json -o -name '*.trec' -o -path '*mteb/*' -name '*.json' -o -name model_card.md -o -path 'results/notebooks/*.html' | sort

lint: install ## ruff and mypy
	$(BIN)/ruff check helpers tests benchmarks conftest.py
	$(BIN)/mypy

test: lint ## the whole suite: lint, unit and model tests, papermill runs, nbval, the browser tests
	@sh tests/browser/install_chromium.sh
	$(QUIET) $(BIN)/pytest --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg \
	  tests $(NOTEBOOKS)

test-unit: install ## logic-only tests (pytest -m unit: no model, no notebook), under a minute; lint: make lint
	$(QUIET) $(BIN)/pytest -m unit tests

test-browser: install ## the notebooks in JupyterLab, headless Chromium (installed when root); screenshots in results/screenshots/
	@sh tests/browser/install_chromium.sh
	$(BIN)/pytest tests/browser

test-slow: install ## the slow reproduction runs only
	$(QUIET) $(BIN)/pytest -m slow tests

regen: install ## re-execute the committed notebooks in place (the nbval references)
	@for nb in $(NOTEBOOKS); do \
	  echo "== $$nb"; \
	  $(QUIET) $(BIN)/jupyter nbconvert --to notebook --execute --inplace \
	    --ExecutePreprocessor.kernel_name=python3 --ExecutePreprocessor.record_timing=False \
	    --ExecutePreprocessor.timeout=1800 "$$nb" || exit 1; \
	done

bench: install ## the CPU benchmarks (each prints one JSON object as its last line)
	$(QUIET) $(BIN)/python benchmarks/encode_throughput.py --device cpu --passages 1024 --char-sort
	@why=$$($(BIN)/python -c "from helpers.models import cpu_bf16_support as s; print(s() or '')"); \
	if [ -z "$$why" ]; then $(QUIET) $(BIN)/python benchmarks/encode_throughput.py --device cpu \
	  --dtype bfloat16 --rounds 3 --matmul --profile --char-sort; \
	else echo "encode_throughput in bfloat16 skipped: $$why"; fi
	$(QUIET) $(BIN)/python benchmarks/pipeline_feed.py --passages 20000
	$(QUIET) $(BIN)/python benchmarks/cache_rerun.py
	$(QUIET) $(BIN)/python benchmarks/search_scale.py --sizes 100000 1000000 --target-recall 0.99
	$(QUIET) $(BIN)/python benchmarks/ray_scaling.py --passages 2000

clean: ## remove generated results and the embedding cache (keeps .venv)
	rm -rf results/notebooks results/01_msmarco_eval results/mteb results/cache results/screenshots
