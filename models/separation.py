"""Drum separation with Demucs: find the weights, verify them, load them once, pick the device.

torch and demucs are optional (the ``separation`` extra), and no weights ship with the
project, so everything here degrades to ``Separation.unavailable(reason)``: the service
runs without separation and says why in ``/health``, job results and the live ``ready``.
torch is imported only once weights are found, so a service without them starts fast.

Where weights are looked for, in order (first hit wins):

1. ``DRUMSCRIBE_DEMUCS_WEIGHTS``: a weights file (``<sig>-<sha256 prefix>.th`` as Demucs
   names them, any ``.th``/``.safetensors`` with a ``<file>.sha256`` beside it) or a folder of them
   (with the bag's ``<name>.yaml``, or the one model it holds);
2. the torch hub cache (``$TORCH_HOME/hub/checkpoints``), where Demucs' own download puts them;
3. the Hugging Face cache (``models--adefossez--HTDemucs``), where ``drumscribe models fetch demucs``
   puts them.

Every file is checked against a SHA-256 before torch unpickles it: the prefix in a Demucs
file name, a ``.sha256`` file, or the blob name of the Hugging Face cache (its SHA-256). A
file that cannot be checked is refused: unpickling runs code.
"""
from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # torch is optional: only imported once weights are found
    import torch

    from models.separation_windows import StreamingSeparator, Window

log = logging.getLogger("drumscribe.separation")

DEFAULT_MODEL = "htdemucs"
HF_NAMESPACE = "adefossez"
DRUMS = "drums"
WEIGHT_SUFFIXES = (".th", ".safetensors")
# Window defaults (seconds, overlap fraction); see the README's "Drum separation" section.
BATCH_OVERLAP = 0.25       # Demucs' own default for whole files
LIVE_WINDOW_SECONDS = 1.0  # added live look-ahead; Demucs hears 1 s of context
LIVE_OVERLAP = 0.25        # 0.25 s cross-fade, a new window every 0.75 s
FETCH_HINT = "set DRUMSCRIBE_DEMUCS_WEIGHTS, or run `drumscribe models fetch demucs` where there is internet"


class WeightsError(RuntimeError):
    """Weights that exist but cannot be used: a checksum mismatch, an unverifiable or broken file."""


class SeparationUnavailable(RuntimeError):
    """Separation was asked for, but this process has no Demucs (no weights, or no torch/demucs)."""


def demucs_installed() -> bool:
    """torch and demucs importable (the ``separation`` extra plus ``demucs --no-deps``)."""
    return all(importlib.util.find_spec(name) is not None for name in ("torch", "demucs", "einops", "julius"))


# --- where weights are ----------------------------------------------------------------

def torch_hub_checkpoints() -> Path:
    """torch.hub's checkpoint folder, computed as torch does but without importing it."""
    home = os.environ.get("TORCH_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "torch")
    return Path(home).expanduser() / "hub" / "checkpoints"


def hf_hub_cache() -> Path:
    """The Hugging Face hub cache folder, as huggingface_hub computes it."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def hf_repo_id(name: str) -> str:
    """Demucs' Hugging Face repository of a model name (``htdemucs`` -> ``adefossez/HTDemucs``)."""
    if name == "htdemucs":
        return f"{HF_NAMESPACE}/HTDemucs"
    if name.startswith("htdemucs_"):
        return f"{HF_NAMESPACE}/HTDemucs-{name.removeprefix('htdemucs_')}"
    return f"{HF_NAMESPACE}/Demucs-{name}"


def hf_snapshot(name: str, cache: Path | None = None) -> Path | None:
    """The cached snapshot folder of ``name``'s repository (the ``main`` ref first), if any."""
    repo = (cache or hf_hub_cache()) / ("models--" + hf_repo_id(name).replace("/", "--"))
    snapshots = repo / "snapshots"
    if not snapshots.is_dir():
        return None
    ref = repo / "refs" / "main"
    if ref.is_file() and (snapshots / ref.read_text().strip()).is_dir():
        return snapshots / ref.read_text().strip()
    candidates = sorted((p for p in snapshots.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    return candidates[-1] if candidates else None


def find_weights(name: str = DEFAULT_MODEL, configured: str | None = None) -> Path | None:
    """The first place holding weights for ``name`` (see the module docstring), or None."""
    configured = os.environ.get("DRUMSCRIBE_DEMUCS_WEIGHTS") if configured is None else configured
    if configured:
        path = Path(configured).expanduser()
        if not path.exists():
            raise WeightsError(f"DRUMSCRIBE_DEMUCS_WEIGHTS={configured}: no such file or folder")
        return path
    hub = torch_hub_checkpoints()
    # the folder first: without it, reading the bag's yaml (which ships with demucs) costs start-up for nothing
    if hub.is_dir() and importlib.util.find_spec("demucs") is not None and _bag_definition(name, hub) \
            and _has_bag(name, hub):
        return hub  # the bag's yaml ships with demucs; a stray .th of another model is not enough
    return hf_snapshot(name)


# --- checksums ---------------------------------------------------------------------------

_VERIFIED: dict[tuple[str, int, float], str] = {}  # (path, size, mtime) -> sha256, per process


def sha256_of(path: Path) -> str:
    """The file's SHA-256, computed once per process for an unchanged file."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime)
    if key not in _VERIFIED:
        digest = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        _VERIFIED[key] = digest.hexdigest()
    return _VERIFIED[key]


def expected_checksum(path: Path) -> str | None:
    """What ``path`` should hash to (a full SHA-256 or a prefix of one), from where Demucs, we and
    the Hugging Face cache keep it; None when nothing says."""
    sidecar = path.with_name(path.name + ".sha256")
    if sidecar.is_file():
        return sidecar.read_text().split()[0].strip().lower()
    match = re.fullmatch(r"[A-Za-z0-9_]+-([0-9a-f]{8,64})", path.stem)
    if match and path.suffix == ".th":
        return match.group(1)
    target = path.resolve()
    if re.fullmatch(r"[0-9a-f]{64}", target.name):  # a Hugging Face blob is named by its SHA-256
        return target.name
    return None


def verify(path: Path) -> None:
    """``WeightsError`` unless ``path`` matches its checksum."""
    expected = expected_checksum(path)
    if expected is None:
        raise WeightsError(f"{path}: cannot verify these weights; name the file <sig>-<sha256 prefix>.th "
                           f"as Demucs does, or put its SHA-256 in {path.name}.sha256 beside it")
    actual = sha256_of(path)
    if not actual.startswith(expected):
        raise WeightsError(f"{path}: checksum mismatch (expected {expected}, got {actual[:len(expected)]}); "
                           "the file is corrupt or not the weights it claims to be: delete it and fetch it again")


# --- loading -----------------------------------------------------------------------------

def _sig_of(path: Path) -> str | None:
    """The Demucs signature of a weights file: ``955717e8`` of ``955717e8-8726e21a.th``."""
    if path.suffix not in WEIGHT_SUFFIXES:
        return None
    return path.stem.split("-", 1)[0]


def _bag_definition(name: str, folder: Path) -> dict | None:
    """The bag ``name`` (``models``, optional ``weights`` and ``segment``): from ``<name>.yaml`` in
    ``folder``, else the one Demucs ships for its pretrained models, else None."""
    candidates = [folder / f"{name}.yaml"]
    spec = importlib.util.find_spec("demucs")
    if spec is not None and spec.origin:
        candidates.append(Path(spec.origin).parent / "remote" / f"{name}.yaml")
    for yaml_file in candidates:
        if yaml_file.is_file():
            import yaml

            return yaml.safe_load(yaml_file.read_text())
    return None


def _bag(name: str, folder: Path) -> tuple[list[Path], list[list[float]] | None, float | None]:
    """The files, per-source weights and segment of model ``name`` in ``folder``."""
    files = [p for p in sorted(folder.iterdir()) if _sig_of(p) and p.is_file()]
    definition = _bag_definition(name, folder)
    if definition is None:
        named = [p for p in files if _sig_of(p) == name]
        if named or len(files) == 1:
            return (named or files)[:1], None, None
        raise WeightsError(f"{folder}: no {name}.yaml and {len(files)} weight files; keep one, or add the bag's yaml")
    chosen = []
    for sig in definition["models"]:
        matching = [p for p in files if _sig_of(p) == str(sig)]
        if not matching:
            raise WeightsError(f"{folder}: model {name} needs {sig}, which is not there ({FETCH_HINT})")
        chosen.append(matching[0])
    return chosen, definition.get("weights"), definition.get("segment")


def _has_bag(name: str, folder: Path) -> bool:
    """Whether ``folder`` holds every file of ``name`` (used to probe caches quietly)."""
    try:
        return folder.is_dir() and bool(_bag(name, folder)[0])
    except WeightsError:
        return False


def _load_file(path: Path):
    """One Demucs model from a verified ``.th`` package or ``.safetensors`` file."""
    verify(path)
    try:
        if path.suffix == ".safetensors":
            from demucs.hf import load_safetensors_model

            return load_safetensors_model(path)
        from demucs.states import load_model

        return load_model(path)
    except Exception as error:  # a verified file that still does not load: say which
        raise WeightsError(f"{path}: not a Demucs model ({type(error).__name__}: {error})") from error


def pick_device(requested: str | None = None) -> str:
    """``cuda`` when torch sees a GPU, else ``cpu``; ``DRUMSCRIBE_DEMUCS_DEVICE`` overrides."""
    import torch

    requested = requested or os.environ.get("DRUMSCRIBE_DEMUCS_DEVICE") or "auto"
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise WeightsError("DRUMSCRIBE_DEMUCS_DEVICE asks for CUDA, but torch sees no GPU")
    return requested


class Separator:
    """A loaded Demucs model (or bag) on its device: the drums of a mix, whole or in windows.

    Only the bag's members that contribute to the drums are kept (``htdemucs_ft`` has one of
    four). Calls are serialized by a lock: live sessions and batch workers share one model, and
    concurrent forward passes would only fight over the same cores or GPU; live windows of many
    sessions go as one batch (``drums_batch``, fed by ``stream.separation_batcher``).
    """

    def __init__(self, model: Any, name: str, weights: Path | None = None, device: str = "cpu",
                 half: bool | None = None) -> None:
        import torch
        from demucs.apply import BagOfModels

        members = list(model.models) if isinstance(model, BagOfModels) else [model]
        bag_weights = model.weights if isinstance(model, BagOfModels) else [[1.0] * len(model.sources)]
        if DRUMS not in members[0].sources:
            raise WeightsError(f"{name}: the model has no drums source (it separates {', '.join(members[0].sources)})")
        self.drums_index = members[0].sources.index(DRUMS)
        self.members = [(m.to(device).eval(), float(w[self.drums_index])) for m, w in zip(members, bag_weights)
                        if w[self.drums_index] > 0]
        self.name, self.weights_path, self.device = name, weights, device
        self.samplerate: int = members[0].samplerate
        self.audio_channels: int = members[0].audio_channels
        if half is None:  # float16 autocast on CUDA unless DRUMSCRIBE_DEMUCS_HALF=0; never on CPU
            half = os.environ.get("DRUMSCRIBE_DEMUCS_HALF", "1") not in ("0", "false", "no")
        self.half = half and device.startswith("cuda")
        self._lock = threading.Lock()
        self._torch = torch

    @property
    def max_window_seconds(self) -> float:
        """The longest window the model takes: an HTDemucs its training segment (7.8 s for
        htdemucs), a convolutional Demucs any (infinite)."""
        from demucs.htdemucs import HTDemucs

        segments = [float(m.segment) for m, _ in self.members if isinstance(m, HTDemucs)]
        return min(segments) if segments else float("inf")

    @property
    def default_window_seconds(self) -> float:
        """What ``apply_model`` uses for whole files: the model's segment."""
        return min(self.max_window_seconds, float(self.members[0][0].segment))

    @staticmethod
    def _member_length(model: Any, length: int, window_seconds: float) -> int:
        """The padded length one model runs a ``length``-sample chunk at (as ``apply_model`` does)."""
        from demucs.htdemucs import HTDemucs

        if isinstance(model, HTDemucs):
            return int(window_seconds * model.samplerate)
        if hasattr(model, "valid_length"):
            return model.valid_length(length)
        return length

    def valid_length(self, length: int, window_seconds: float) -> int:
        """The padded length a window is cut at: the longest any member needs."""
        return max(self._member_length(model, length, window_seconds) for model, _ in self.members)

    def drums_batch(self, windows: Sequence["Window"]) -> list["torch.Tensor"]:
        """Drums (channels, length) of each window, on the CPU.

        Windows of the same length and padding are stacked into one forward pass per member (one
        GPU launch for many live sessions); each is computed as ``apply_model(split=False)``
        computes it alone (a member's padding is the centre of the window's), so a batch equals
        its windows run one by one to float rounding, and a batch of one is ``apply_model``'s.
        """
        from demucs.utils import center_trim

        torch = self._torch
        groups: dict[tuple[int, int, float], list[int]] = {}
        for i, window in enumerate(windows):
            groups.setdefault((window.input.shape[-1], window.length, window.window_seconds), []).append(i)
        results: list[torch.Tensor] = [torch.empty(0)] * len(windows)
        with self._lock, torch.inference_mode(), torch.autocast("cuda", torch.float16, enabled=self.half):
            for (padded, length, window_seconds), indices in groups.items():
                mix = torch.stack([windows[i].input for i in indices]).to(self.device)
                total, weight_sum = None, 0.0
                for model, weight in self.members:
                    needed = self._member_length(model, length, window_seconds)
                    start = (padded - length) // 2 - (needed - length) // 2
                    out = center_trim(model(mix[..., start:start + needed]), length)[:, self.drums_index].float()
                    if len(self.members) > 1:
                        out = out * weight
                    total = out if total is None else total + out
                    weight_sum += weight
                assert total is not None
                drums = (total if len(self.members) == 1 else total / weight_sum).cpu()
                for i, one in zip(indices, drums):
                    results[i] = one
        return results

    def stream(self, window_seconds: float | None = None, overlap: float = BATCH_OVERLAP,
               transition_power: float = 1.0) -> "StreamingSeparator":
        """A ``StreamingSeparator`` (default window: the model's longest, as ``apply_model`` uses)."""
        from models.separation_windows import StreamingSeparator

        return StreamingSeparator(self, window_seconds or self.default_window_seconds, overlap, transition_power)

    def separate(self, audio: np.ndarray, progress: Callable[[float], None] | None = None,
                 window_seconds: float | None = None, overlap: float = BATCH_OVERLAP) -> np.ndarray:
        """Mono drums of ``audio`` (mono or (frames, channels), at ``self.samplerate``); the same
        windows as a stream, fed a chunk of several windows at a time so progress can be shown."""
        stream = self.stream(window_seconds, overlap)
        step = max(stream.stride * 4, 1)
        parts = []
        for start in range(0, len(audio), step):
            parts.append(stream.push(audio[start:start + step]))
            if progress is not None:
                progress(min(1.0, (start + step) / max(1, len(audio))))
        parts.append(stream.flush())
        return np.concatenate(parts)


@dataclass
class Separation:
    """What this process has for separation: a loaded ``Separator``, or why there is none."""

    separator: Separator | None = None
    reason: str = ""
    weights: str | None = None

    @classmethod
    def unavailable(cls, reason: str, weights: str | None = None) -> "Separation":
        return cls(None, reason, weights)

    @property
    def available(self) -> bool:
        return self.separator is not None

    def require(self) -> Separator:
        """The separator, or ``SeparationUnavailable`` saying why there is none."""
        if self.separator is None:
            raise SeparationUnavailable(f"drum separation is unavailable: {self.reason}")
        return self.separator

    def status(self) -> dict:
        """For ``/health`` and result JSON."""
        s = self.separator
        if s is None:
            return {"available": False, "reason": self.reason}
        return {"available": True, "model": s.name, "device": s.device, "half": s.half,
                "sample_rate": s.samplerate, "weights": self.weights,
                "live_window_ms": round(LIVE_WINDOW_SECONDS * 1000), "live_overlap": LIVE_OVERLAP}


def load_separator(weights: str | Path, name: str | None = None, device: str | None = None) -> Separator:
    """Load and verify the weights at ``weights`` (a file or folder) onto ``device``.

    Raises ``WeightsError`` (bad or unverifiable weights) and ``SeparationUnavailable`` (no torch
    or demucs installed).
    """
    if not demucs_installed():
        raise SeparationUnavailable("torch and demucs are not installed (pip install '.[separation]' "
                                    "and pip install --no-deps demucs==4.1.0)")
    name = name or os.environ.get("DRUMSCRIBE_DEMUCS_MODEL") or DEFAULT_MODEL
    path = Path(weights)
    if path.is_file():
        model = _load_file(path)
    elif path.is_dir():
        files, bag_weights, segment = _bag(name, path)
        models = [_load_file(p) for p in files]
        if len(models) == 1 and bag_weights is None and segment is None:
            model = models[0]
        else:
            from demucs.apply import BagOfModels

            model = BagOfModels(models, bag_weights, segment)
    else:
        raise WeightsError(f"{path}: no such file or folder")
    return Separator(model, name, path, pick_device(device))


_LOADED: dict[tuple[str, str, str], Separator] = {}
_LOADED_LOCK = threading.Lock()


def load_separation(weights: str | Path | None = None, name: str | None = None,
                    device: str | None = None) -> Separation:
    """This process's separation: loaded once per (weights, model, device), never raising.

    No weights, no torch/demucs, or bad weights give ``Separation.unavailable`` with the reason
    (bad weights are also logged as an error: they need an operator).
    """
    name = name or os.environ.get("DRUMSCRIBE_DEMUCS_MODEL") or DEFAULT_MODEL
    if not demucs_installed():
        return Separation.unavailable("torch and demucs are not installed (the `separation` extra)")
    try:
        path = Path(weights) if weights is not None else find_weights(name)
        if path is None:
            return Separation.unavailable(f"no Demucs weights found; {FETCH_HINT}")
        key = (str(path.resolve()), name, device or os.environ.get("DRUMSCRIBE_DEMUCS_DEVICE") or "auto")
        with _LOADED_LOCK:
            if key not in _LOADED:
                _LOADED[key] = load_separator(path, name, device)
        return Separation(_LOADED[key], weights=str(path))
    except SeparationUnavailable as error:
        return Separation.unavailable(str(error))
    except WeightsError as error:
        log.error("drum separation disabled: %s", error)
        return Separation.unavailable(str(error))


def save_model(model: Any, folder: Path, sig: str) -> Path:
    """Write a Demucs model as Demucs packages it, named ``<sig>-<sha256 prefix>.th`` (so it can be
    verified); for tests, benchmarks and models trained here."""
    import io

    import torch
    from demucs.states import get_state

    args, kwargs = model._init_args_kwargs
    package = {"klass": model.__class__, "args": args, "kwargs": kwargs, "state": get_state(model, None)}
    buffer = io.BytesIO()
    torch.save(package, buffer)
    data = buffer.getvalue()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{sig}-{hashlib.sha256(data).hexdigest()[:8]}.th"
    path.write_bytes(data)
    return path
