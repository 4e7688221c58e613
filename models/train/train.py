"""Train HitNet on rendered shards (what ``make train`` runs after the renderer).

``python -m models.train.train --data train-data`` trains from scratch and keeps an
exponential moving average of the weights at ``--keep-steps`` as candidates, among which
``models.train.select`` chooses. CPU by default; CUDA when present.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.optim import swa_utils

from models.features import FPS, N_MELS
from models.network import CONTEXT_FRAMES, RECEPTIVE_FIELD, HitNet, split_outputs
from models.vocab import FAMILIES, FAMILY_OF, INSTRUMENTS

FAMILY_INDEX = np.array([FAMILIES.index(FAMILY_OF[name]) for name in INSTRUMENTS])
NEIGHBOUR_TARGET = 0.5  # target widening: frames next to an onset count half
RARE_FAMILIES = ("tom", "cymbal")  # few in grooves, so crops are centred on them (see ``sample_batch``)
# Onset loss weight per family: the rare families count more (toms and cymbals were the weakest).
FAMILY_WEIGHT = torch.tensor([{"tom": 2.0, "cymbal": 1.5}.get(family, 1.0) for family in FAMILIES])


class Example:
    """One rendered performance: features plus frame-level targets."""

    def __init__(self, record: dict) -> None:
        self.features = record["features"]
        n = len(self.features)
        frames = np.floor(record["times"] * FPS).astype(int)
        keep = frames < n
        frames, instruments, velocities = frames[keep], record["instruments"][keep].astype(int), record["velocities"][keep]
        families = FAMILY_INDEX[instruments]
        self.onsets = np.zeros((n, len(FAMILIES)), np.float32)
        self.instruments = np.zeros((n, len(INSTRUMENTS)), np.float32)
        self.velocity = np.zeros((n, len(FAMILIES)), np.float32)
        self.velocity_mask = np.zeros((n, len(FAMILIES)), np.float32)
        for shift, value in ((-1, NEIGHBOUR_TARGET), (1, NEIGHBOUR_TARGET), (0, 1.0)):
            at = np.clip(frames + shift, 0, n - 1)
            np.maximum.at(self.onsets, (at, families), value)
            np.maximum.at(self.instruments, (at, instruments), value)
        np.maximum.at(self.velocity, (frames, families), velocities)
        self.velocity_mask[frames, families] = 1.0
        rare = np.isin(families, [FAMILIES.index(f) for f in RARE_FAMILIES])
        self.rare_frames = frames[rare]  # where a tom or cymbal is hit


def load_examples(paths: list[Path]) -> list[Example]:
    examples = []
    for path in paths:
        for record in np.load(path, allow_pickle=True)["examples"]:
            examples.append(Example(record))
    return examples


def sample_batch(examples: list[Example], batch: int, crop: int, rng: np.random.Generator,
                 rare_chance: float = 0.0) -> tuple[torch.Tensor, ...]:
    """Random crops: ``crop`` target frames, with the network's context read from before them.

    ``rare_chance`` of the crops contain a tom or cymbal hit, drawn from the examples that
    have them (oversampling the rare families, as ADTOF did).
    """
    rare = [example for example in examples if len(example.rare_frames)]
    span = crop + RECEPTIVE_FIELD - 1
    x = np.zeros((batch, span, N_MELS), np.float32)
    onsets = np.zeros((batch, crop, len(FAMILIES)), np.float32)
    instruments = np.zeros((batch, crop, len(INSTRUMENTS)), np.float32)
    velocity = np.zeros_like(onsets)
    mask = np.zeros_like(onsets)
    for row in range(batch):
        n_rare = len(rare) if rare and rng.random() < rare_chance else 0
        example = rare[int(rng.integers(n_rare))] if n_rare else examples[int(rng.integers(len(examples)))]
        n = len(example.features)
        if n_rare:  # a crop around one of its rare hits
            target = int(example.rare_frames[int(rng.integers(len(example.rare_frames)))])
            first = target - int(rng.integers(crop)) - CONTEXT_FRAMES
        else:
            first = int(rng.integers(-CONTEXT_FRAMES, max(1, n - crop)))  # first target frame minus context
        target_start = first + CONTEXT_FRAMES
        lo, hi = max(0, first), min(n, first + span)
        x[row, lo - first: hi - first] = example.features[lo:hi]
        t_lo, t_hi = max(0, target_start), min(n, target_start + crop)
        if t_hi > t_lo:
            sl = slice(t_lo - target_start, t_hi - target_start)
            onsets[row, sl] = example.onsets[t_lo:t_hi]
            instruments[row, sl] = example.instruments[t_lo:t_hi]
            velocity[row, sl] = example.velocity[t_lo:t_hi]
            mask[row, sl] = example.velocity_mask[t_lo:t_hi]
    return tuple(torch.from_numpy(a) for a in (x, onsets, instruments, velocity, mask))


def loss_fn(out: torch.Tensor, onsets, instruments, velocity, mask) -> torch.Tensor:
    onset_logits, instrument_logits, velocity_logits = split_outputs(out)
    bce = nn.functional.binary_cross_entropy_with_logits
    weight = (1.0 + 4.0 * (onsets > 0)) * FAMILY_WEIGHT.to(onsets.device)  # onsets are rare: weigh them up
    onset_loss = bce(onset_logits, onsets, weight=weight)
    instrument_loss = bce(instrument_logits, instruments, weight=1.0 + 4.0 * (instruments > 0))
    velocity_loss = (bce(velocity_logits, velocity, reduction="none") * mask).sum() / mask.sum().clamp(min=1)
    return onset_loss + 0.5 * instrument_loss + 0.1 * velocity_loss


def train(args: argparse.Namespace) -> HitNet:
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cudnn.allow_tf32 = False  # full float32 on a GPU too, as on the CPU: the same recipe
    shards = sorted(args.data.glob("shard-*.npz"))
    examples = load_examples(shards)
    print(f"{len(examples)} examples from {len(shards)} shards, {sum(len(e.features) for e in examples) / FPS / 3600:.1f} h", flush=True)
    model = HitNet(args.width).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, total_steps=args.steps, pct_start=0.05)
    # An exponential moving average of the weights: steadier on real drums than any one step.
    average = swa_utils.AveragedModel(model, multi_avg_fn=swa_utils.get_ema_multi_avg_fn(args.ema)) if args.ema else None
    saved = average.module if average is not None else model
    started, running = time.time(), 0.0
    for step in range(1, args.steps + 1):
        model.train()
        batch = [t.to(device) for t in sample_batch(examples, args.batch, args.crop, rng, args.rare_chance)]
        loss = loss_fn(model(batch[0]), *batch[1:])
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        if average is not None:
            average.update_parameters(model)
        schedule.step()
        running = 0.98 * running + 0.02 * loss.item() if step > 1 else loss.item()
        if step % 100 == 0:
            print(f"step {step} loss {running:.4f} lr {schedule.get_last_lr()[0]:.2e} {time.time() - started:.1f}s", flush=True)
        if step % args.checkpoint_every == 0 or step == args.steps:
            torch.save(saved.state_dict(), args.checkpoint)
        if step in args.keep_steps:  # candidates for the shipped weights: see --keep-steps
            torch.save(saved.state_dict(), args.checkpoint.with_name(f"{args.checkpoint.stem}-step{step}.pt"))
    return saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("train-data"))
    parser.add_argument("--checkpoint", type=Path, default=Path("train-data/hitnet.pt"))
    parser.add_argument("--steps", type=int, default=10000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--crop", type=int, default=300)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--checkpoint-every", type=int, default=250)
    parser.add_argument("--keep-steps", type=int, nargs="*", default=[],
                        help="also keep these steps' weights (hitnet-stepN.pt): candidates for models.train.select")
    parser.add_argument("--ema", type=float, default=0.0,
                        help="save an exponential moving average of the weights with this decay (0: the weights)")
    parser.add_argument("--rare-chance", type=float, default=0.3, help="share of crops centred on a tom or cymbal hit")
    parser.add_argument("--width", type=int, default=128, help="channels of the causal temporal stack")
    parser.add_argument("--seed", type=int, default=7)
    train(parser.parse_args())


if __name__ == "__main__":
    main()
