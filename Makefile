# unibind: two commands from a fresh clone.
#   make demo   virtual environment, install, ingest part of the builtin corpus with MiniLM, search it,
#               build the centres and recognise descriptions that never name their class
#   make test   the whole test suite, with the extras it needs (Ray, Milvus); SQLite and PostgreSQL
#               (set UNIBIND_TEST_DATABASE_URL for another server)

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.unibind-installed
DEMO_CLASSES ?= 50
UNIBIND := $(BIN)/unibind

# No run-time hub downloads in the demo and tests: the encoders they use ship in wheels.
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install extras demo test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	# the builtin corpus ships in clip-benchmark's wheel; its own dependencies are not needed
	$(BIN)/python -m pip install --quiet --no-deps "clip-benchmark>=1.6"
	touch $(STAMP)

install: $(STAMP)

# what the whole test suite needs besides: Ray (encoding actors), the Milvus client and milvus-lite. milvus-lite goes
# in without its dependencies: it asks for faiss-cpu, whose files would replace faiss-gpu's
EXTRAS_STAMP := $(VENV)/.unibind-extras
$(EXTRAS_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[dev,ray,milvus,milvus-lite]"
	$(BIN)/python -m pip install --quiet --no-deps "milvus-lite>=2.4"
	touch $(EXTRAS_STAMP)

extras: $(EXTRAS_STAMP)

demo: install
	$(UNIBIND) config
	$(UNIBIND) ingest --builtin cupl-imagenet --classes $(DEMO_CLASSES) --encoder minilm --replace
	$(UNIBIND) corpus list
	$(UNIBIND) categories --corpus cupl-imagenet | tail -n 6
	$(UNIBIND) search --target descriptions -k 5 \
	  --text "a freshwater fish with olive-green scales" \
	  --text "a large bird of prey with a white head" \
	  --text "a small shark that lives near coral reefs"
	$(UNIBIND) index verify
	$(UNIBIND) centres build
	$(UNIBIND) centres show "bald eagle" | head -n 8
	$(UNIBIND) recognize -k 3 \
	  --text "A large bird of prey with a white head and a yellow hooked beak." \
	  --text "A small orange fish often kept in a glass bowl at home." \
	  --text "A flat fish with a long whip-like tail and a venomous barb." \
	  --text "A huge lizard from Indonesia with a forked tongue and a deadly bite."

test: extras
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python bench/ingest.py

clean:
	rm -rf $(VENV) unibind-data .pytest_cache
