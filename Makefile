# Everything a newcomer needs: `make run` to serve, `make test` to check. Each sets itself up.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python

.DEFAULT_GOAL := help
.PHONY: help install install-dev demo-model train-demo train-demo-lora demo-quality bench-model bench bench-speed bench-flux-memory run worker dev test lint format loadtest fuzz batch-fidelity bench-lora bench-lora-compile bench-tasks images clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(VENV)/.runtime: requirements.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python 3.11+ is required")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

install: $(VENV)/.runtime  ## create .venv with the runtime packages

install-dev: $(VENV)/.dev  ## create .venv with runtime, test and lint packages

demo-model: install  ## install the trained demo and its all-green LoRA (checksums verified); build the random-weight demos of the other families
	$(PY) -m backend.model.demo

train-demo: install  ## train the shapes demo from scratch on the CPU (under 30 min): reproduces demo_model/weights
	$(PY) -m demo_model.train $(TRAIN_ARGS)

train-demo-lora: install  ## train the all-green LoRA on demo_model/weights into models/lora-all-green
	$(PY) -m demo_model.lora $(LORA_ARGS)

demo-quality: install  ## how well the trained demo follows its prompts: colour, position, shape, against targets
	$(PY) -m demo_model.quality $(QUALITY_ARGS)

bench-model: install  ## build SD-Turbo's full-size architecture with random weights (about 5 GB) for benchmarks
	$(PY) -m bench.bench_model

bench: install-dev  ## the benchmark (needs make bench-model): table, bench/results/<date>-<device>.json and .png
	$(PY) -m bench.run $(BENCH_ARGS)

bench-speed: install-dev  ## what each speed setting gains, server by server (needs make bench-model)
	$(PY) -m bench.speed $(SPEED_ARGS)

bench-flux-memory: install  ## FLUX's peak GPU memory per memory setting (FLUX_ARGS="--size full": 12B random weights)
	$(PY) -m bench.flux_memory $(FLUX_ARGS)

.PHONY: gpu-check
gpu-check:  ## on a GPU host (wheels: ../shared/tools/gpu-wheels): pytest -m gpu, bench, bench-speed in 8 min
	bash bench/gpu-check.sh

run: install  ## serve with gunicorn on HOST:PORT (builds the demo model first if it is the default)
	$(PY) -m backend.model.demo --if-default
	exec $(BIN)/gunicorn -c gunicorn.conf.py

worker: install  ## QUEUE_BACKEND=celery: one worker process for one device (DEVICE=cuda:1 make worker)
	$(PY) -m backend.model.demo --if-default
	exec $(PY) -m backend.distributed.worker

dev: install  ## Flask's development server (single process, for debugging only)
	$(PY) -m backend.model.demo --if-default
	$(PY) -m backend.main

lint: install-dev  ## ruff: lint and formatting
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install-dev  ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: lint  ## lint, then the whole test suite (CPU only; GPU tests skip themselves)
	$(BIN)/pytest

loadtest: install-dev  ## 16 clients for 30 s against gunicorn + demo model: only 200/503/429, fast refusals, flat memory
	$(PY) -m backend.model.demo
	$(PY) -m bench.loadtest $(LOADTEST_ARGS)

FUZZ_SECONDS ?= 120
fuzz: install-dev  ## FUZZ_SECONDS (120) of schemathesis + hostile requests on gunicorn: no 5xx, all documented
	$(PY) -m bench.fuzz --seconds $(FUZZ_SECONDS) $(FUZZ_ARGS)

images: install-dev  ## draw the diagrams (docs/diagrams/*.toml), the demo's prompt grid and the web page's screenshot (needs chromium) into .images/
	$(PY) docs/diagrams/draw.py docs/diagrams/*.toml --out .images
	$(PY) -m demo_model.grid --out .images/demo-grid.png
	@if command -v chromium >/dev/null || [ -n "$$CHROMIUM_PATH" ]; then $(PY) -m bench.page_screenshot --out .images/page.png; else echo "no chromium: .images/page.png not refreshed"; fi

bench-lora: install  ## RSS over 1,000 requests cycling through 10 LoRAs (flat is good)
	$(PY) -m bench.lora_memory $(LORA_BENCH_ARGS)

bench-tasks: install  ## memory of one model serving txt2img, img2img and inpaint; img2img/txt2img time
	$(PY) -m bench.task_memory $(TASK_BENCH_ARGS)

.PHONY: bench-previews
bench-previews: install  ## what live previews cost: per preview (linear, tiny VAE), per request, and without
	$(PY) -m bench.preview_cost $(PREVIEW_BENCH_ARGS)

bench-lora-compile: install  ## graphs torch.compile builds while requests change LoRAs (COMPILE=unet, CPU)
	$(PY) -m bench.lora_compile $(LORA_COMPILE_ARGS)

batch-fidelity: install  ## how far micro-batched images differ from solo ones (max difference, PSNR)
	$(PY) -m backend.model.demo
	$(PY) -m bench.batch_fidelity $(FIDELITY_ARGS)

clean:  ## remove .venv and caches (models/ is kept)
	rm -rf $(VENV) .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
