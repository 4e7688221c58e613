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

.PHONY: install run test bench train eval clean

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

# Render the training set from Groove MIDI through the Debian drum kits, train, export.
# Needs: apt-get install hydrogen-drumkits fluidsynth fluid-soundfont-gm musescore-general-soundfont
# Two stages, about 2 hours on 2 cores. Stage 1 (rendering 12 min, 10000 steps about 60 min)
# trains from scratch; its step 5600 is fine-tuned in stage 2 (rendering 12 min, 3000 steps
# about 40 min) on a second rendering with strummed guitars and hand percussion mixed in.
FINETUNE_DATA := $(TRAIN_DATA)/finetune
train: install
	$(BIN)/python -m models.train.synth --groove $(GROOVE) --out $(TRAIN_DATA) --passes 3
	$(BIN)/python -m models.train.train --data $(TRAIN_DATA) --checkpoint $(TRAIN_DATA)/hitnet.pt
	$(BIN)/python -m models.train.synth --groove $(GROOVE) --out $(FINETUNE_DATA) --passes 2 --seed 4321 \
		--band-chance 0.6 --strums --percussion-chance 0.4
	$(BIN)/python -m models.train.train --data $(FINETUNE_DATA) --checkpoint $(FINETUNE_DATA)/hitnet.pt \
		--init $(TRAIN_DATA)/hitnet-step5600.pt --steps 3000 --lr 5e-4 --ema 0.999
	$(BIN)/python -m models.train.export $(FINETUNE_DATA)/hitnet.pt --out models/weights
	# per-family thresholds tuned on the MDB development tracks, when they are at hand
	if [ -d $(MDB) ]; then $(BIN)/python -m models.train.mdb $(MDB) --weights models/weights --tune --write; fi

eval: install
	$(BIN)/python -m models.train.mdb $(MDB)

clean:
	rm -rf $(VENV) build
