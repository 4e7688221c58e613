# Two commands do everything on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
MDB ?= ../shared/data/mdb-dev
GROOVE ?= ../shared/data/groove-midi
TRAIN_DATA ?= train-data
# demucs without its declared dependencies (torchaudio would pull a CUDA torch); what its model
# code imports is the `separation` extra.
DEMUCS_VERSION := 4.1.0

.PHONY: install run test bench train train-deps eval clean

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[test,train,separation]'
	$(BIN)/pip install -q --no-deps demucs==$(DEMUCS_VERSION)
	touch $@

install: $(INSTALLED)

# The app on http://127.0.0.1:8000 with an embedded Redis and an in-process worker.
run: install
	$(BIN)/drumscribe serve

test: install
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python bench/transcribe_speed.py
	$(BIN)/python bench/jobs.py
	$(BIN)/python bench/live.py
	$(BIN)/python bench/separation.py

# Render the training set from Groove MIDI through sampled kits (the Debian packages below and
# the MuldjordKit in ../shared), render a validation set with kits held out of training, train
# one network from scratch, keep the checkpoint that scores best on the validation set and MDB
# dev together, and tune its thresholds on both. About 75 minutes on 2 idle cores, all of it rebuilt here.
TRAIN_PACKAGES := hydrogen-drumkits fluidsynth fluid-soundfont-gm musescore-general-soundfont \
	avldrums.lv2-soundfont sonic-pi-samples lmms-common
VAL_DATA ?= val-data
TRAIN_STEPS ?= 6000
KEEP_STEPS ?= 4000 5000 6000
TRAIN_SEED ?= 8
RELEASE ?= dev
RENDER_OPTIONS := --band-chance 0.5 --strums --percussion-chance 0.35 --room-chance 0.5

train-deps:
	dpkg -s $(TRAIN_PACKAGES) >/dev/null 2>&1 || (apt-get update -q && apt-get install -y -q --no-install-recommends $(TRAIN_PACKAGES))

train: install train-deps
	$(BIN)/python -m models.train.synth --groove $(GROOVE) --out $(TRAIN_DATA) --passes 2 $(RENDER_OPTIONS) \
		--blend-chance 0.3 --multimic-chance 0.25
	$(BIN)/python -m models.train.synth --groove $(GROOVE) --out $(VAL_DATA) --kits validation --split test \
		$(RENDER_OPTIONS) --seed 99
	$(BIN)/python -m models.train.train --data $(TRAIN_DATA) --checkpoint $(TRAIN_DATA)/hitnet.pt \
		--steps $(TRAIN_STEPS) --ema 0.999 --keep-steps $(KEEP_STEPS) --seed $(TRAIN_SEED)
	$(BIN)/python -m models.train.select $(foreach s,$(KEEP_STEPS),$(TRAIN_DATA)/hitnet-step$(s).pt) \
		--validation $(VAL_DATA) --mdb $(MDB) --out models/weights --version $(RELEASE)

eval: install
	$(BIN)/python -m models.train.mdb $(MDB)

clean:
	rm -rf $(VENV) build
