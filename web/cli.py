"""The ``drumscribe`` command: transcribe files and evaluate transcriptions."""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from pathlib import Path

from batch.stages import STAGES, parse_stages
from models.audio import AudioError, read_audio, resample
from models.runtime import ModelError
from models.separation import SeparationUnavailable, WeightsError

WRITERS = (".json", ".mid", ".midi")
DEFAULT_MAX_SECONDS = float(os.environ.get("DRUMSCRIBE_MAX_SECONDS", 20 * 60))


def _transcribe(args: argparse.Namespace) -> int:
    # only what this command uses: the batch pipeline would bring the score code (music21,
    # cairo) and scipy.signal, seconds of start-up for a file the network needs 0.1 s for
    from batch.separate import decide_separation, separate
    from models.detector import Detector
    from models.result import build_result
    from models.separation import Separation, load_separation
    from models.beats import estimate_grid

    outputs = [Path(out) for out in args.output]
    unknown = [str(out) for out in outputs if out.suffix.lower() not in WRITERS]
    if unknown:
        raise SystemExit(f"drumscribe: cannot write {', '.join(unknown)}: supported outputs are {', '.join(WRITERS)}")

    detector = Detector()
    source, source_rate = read_audio(args.input, max_seconds=args.max_seconds)
    separation = load_separation() if args.separate != "off" else Separation.unavailable("not asked for")
    decision = decide_separation(args.separate, separation, source, source_rate)
    audio, rate = separate(separation, source, source_rate, lambda _: None) if decision["applied"] else (source, source_rate)
    hits = detector.transcribe(resample(audio, rate, detector.card.sample_rate))
    duration = len(source) / source_rate
    grid = estimate_grid(hits, duration)  # the beat tracker the batch scores and the live path use
    bpm = grid.bpm
    result = build_result(hits, duration, source_rate, detector.card, bpm, grid.time_signature, separation=decision)
    for out in outputs:
        if out.suffix.lower() == ".json":
            out.write_text(json.dumps(result, indent=1) + "\n")
        else:
            from models.midi import performance_midi

            performance_midi(grid, hits).save(out)  # the score's bar lines and tempo map
    if not outputs:
        json.dump(result, sys.stdout, indent=1)
        sys.stdout.write("\n")
    print(f"{len(hits)} hits, {bpm} bpm: " + ", ".join(f"{k} {v}" for k, v in result["summary"].items()), file=sys.stderr)
    return 0


def _eval(args: argparse.Namespace) -> int:
    from models.evaluate import evaluate, format_table, load_onsets

    result = evaluate(load_onsets(args.pred), load_onsets(args.ref), tolerance=args.tolerance)
    print(json.dumps(result, indent=1) if args.json else format_table(result))
    return 0


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from batch import tracing
    from web.app import create_app
    from web.http_settings import HttpSettings
    from web.server import server_config

    tracing.configure_logging()
    tracing.configure("drumscribe")  # before the app: its tracing middleware is added only when on
    http = HttpSettings.from_env().serving(args.host)
    app = create_app(http_settings=http)
    uvicorn.Server(server_config(app, args.host, args.port, http, log_level="info")).run()
    return 0


def _worker(args: argparse.Namespace) -> int:
    from batch import tracing
    from batch.config import Settings
    from batch.connection import connect
    from batch.jobs import JobStore
    from batch.worker import Worker
    from models.detector import Detector
    from models.separation import Separation, load_separation

    settings = Settings.from_env()
    if not settings.redis_url:
        raise SystemExit("drumscribe: a worker needs REDIS_URL (drumscribe serve runs its own workers without it)")
    tracing.configure_logging()
    tracing.configure("drumscribe-worker")
    # only a worker that decides on separation loads it (a CPU pool's decode,score workers do not)
    separation = load_separation() if "separate" in args.stages else Separation.unavailable("not this worker's stage")
    logging.getLogger("drumscribe.worker").info("drum separation: %s", separation.status())
    worker = Worker(JobStore(connect(settings), settings), Detector(), settings, separation=separation,
                    stages=args.stages)
    signal.signal(signal.SIGTERM, lambda *_: worker.stop.set())
    signal.signal(signal.SIGINT, lambda *_: worker.stop.set())
    worker.run()
    return 0


def _fetch(args: argparse.Namespace) -> int:
    """Download Demucs weights into the Hugging Face cache (Demucs' own loader: the hub first, its
    legacy download into the torch hub cache second), then verify and load them as the service will."""
    from models.separation import demucs_installed, find_weights, load_separator

    if args.model != "demucs":
        raise SystemExit(f"drumscribe: unknown model {args.model!r}; only demucs can be fetched")
    if not demucs_installed():
        raise SystemExit("drumscribe: torch and demucs are not installed: pip install '.[separation]' && "
                         "pip install --no-deps demucs==4.1.0 (make install does both)")
    from demucs.pretrained import get_model

    print(f"fetching Demucs {args.name} ...", file=sys.stderr)
    try:
        get_model(args.name)
    except Exception as error:  # offline, blocked, unknown name: say so plainly
        raise SystemExit(f"drumscribe: could not fetch Demucs {args.name}: {type(error).__name__}: {error}\n"
                         "This needs internet access to the Hugging Face hub (or Demucs' download site). Elsewhere, "
                         "fetch there and copy the weights here, then point DRUMSCRIBE_DEMUCS_WEIGHTS at the file "
                         "or folder.") from None
    path = find_weights(args.name, configured="")
    if path is None:
        raise SystemExit(f"drumscribe: Demucs downloaded {args.name}, but not where DrumScribe looks "
                         "(the Hugging Face or torch hub cache); set DRUMSCRIBE_DEMUCS_WEIGHTS")
    separator = load_separator(path, args.name)
    print(f"{args.name}: verified and loaded from {path} ({separator.device}); "
          f"set DRUMSCRIBE_DEMUCS_MODEL={args.name} if it is not htdemucs")
    return 0


def _keys(args: argparse.Namespace) -> int:
    """API keys in the service's Redis: ``REDIS_URL``, or the embedded one under ``DRUMSCRIBE_DATA``
    (shared with a running ``serve``, else started for this command and stopped after it)."""
    from batch import keys
    from batch.config import Settings
    from batch.connection import close, connect

    client = connect(Settings.from_env())
    try:
        if args.keys_command == "create":
            key, record = keys.create(client, args.name, args.max_jobs, args.max_sessions, args.operator)
            print(json.dumps({"key": key, "webhook_secret": record.webhook_secret}))
        elif args.keys_command == "list":
            for record in keys.all_keys(client):
                print(json.dumps(record.listed()))
        else:
            keys.revoke(client, args.name)
            print(json.dumps({"revoked": args.name}))
    except keys.KeyRefused as error:
        raise SystemExit(f"drumscribe: {error}") from None
    finally:
        close(client)
    return 0


def _webhooks(args: argparse.Namespace) -> int:
    """The secret that signs the webhooks of jobs without an API key (``DRUMSCRIBE_WEBHOOK_SECRET``,
    else the one kept in the service's Redis, made now if there is none)."""
    from batch import webhooks
    from batch.config import Settings
    from batch.connection import close, connect

    settings = Settings.from_env()
    client = connect(settings)
    try:
        print(json.dumps({"webhook_secret": webhooks.server_secret(client, settings)}))
    finally:
        close(client)
    return 0


def _stages(value: str) -> tuple[str, ...]:
    try:
        return parse_stages(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _limit(value: str) -> int:
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return number


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="drumscribe", description="Drum audio to drum hits and scores.")
    commands = parser.add_subparsers(dest="command", required=True)

    transcribe = commands.add_parser("transcribe", help="transcribe an audio or video file")
    transcribe.add_argument("input", help="any audio or video file (wav, flac, mp3, ogg, m4a, webm, mp4...)")
    transcribe.add_argument("-o", "--output", action="append", default=[],
                            help="write the result; the suffix picks the format (.json, .mid); repeatable")
    transcribe.add_argument("--max-seconds", type=float, default=DEFAULT_MAX_SECONDS,
                            help="refuse longer inputs (default: %(default)s, env DRUMSCRIBE_MAX_SECONDS)")
    transcribe.add_argument("--separate", choices=("auto", "on", "off"), default="auto",
                            help="separate the drums with Demucs first: auto (full mixes, when weights are "
                                 "present), on, off (default: %(default)s)")
    transcribe.set_defaults(run=_transcribe)

    serve = commands.add_parser("serve", help="serve the web app and API (embedded Redis unless REDIS_URL is set)")
    serve.add_argument("--host", default=os.environ.get("DRUMSCRIBE_HOST", "127.0.0.1"))
    serve.add_argument("--port", type=int, default=int(os.environ.get("DRUMSCRIBE_PORT", "8000")))
    serve.set_defaults(run=_serve)

    worker = commands.add_parser("worker", help="a batch worker for the Redis at REDIS_URL")
    worker.add_argument("--stages", type=_stages, default=STAGES, metavar="STAGE,...",
                        help=f"take only these stages of each job, handing it on for the others "
                             f"(of {','.join(STAGES)}; default: all), e.g. decode,score on CPU machines "
                             "and separate,detect on GPU machines")
    worker.set_defaults(run=_worker)

    evaluate = commands.add_parser("eval", help="precision, recall and F-measure of PRED against REF")
    evaluate.add_argument("pred", help="result JSON, or an MDB annotation file")
    evaluate.add_argument("ref", help="result JSON, or an MDB annotation file (<T>_class.txt / <T>_subclass.txt)")
    evaluate.add_argument("--tolerance", type=float, default=0.05, help="seconds (default: %(default)s)")
    evaluate.add_argument("--json", action="store_true", help="print JSON instead of a table")
    evaluate.set_defaults(run=_eval)

    api_keys = commands.add_parser("keys", help="API keys for DRUMSCRIBE_AUTH=keys (works while serve runs)")
    keys_commands = api_keys.add_subparsers(dest="keys_command", required=True)
    create = keys_commands.add_parser("create", help="make a key; prints {\"key\", \"webhook_secret\"} once")
    create.add_argument("name", help="1-64 letters, digits, '.', '_' or '-'")
    create.add_argument("--max-jobs", type=_limit, help="jobs queued or running at once (default: no limit)")
    create.add_argument("--max-sessions", type=_limit, help="live sessions at once (default: no limit)")
    create.add_argument("--operator", action="store_true", help="may read /metrics and /health details")
    keys_commands.add_parser("list", help="one JSON line per key (no key, no secret)")
    revoke = keys_commands.add_parser("revoke", help="refuse the key from its next request on")
    revoke.add_argument("name")
    api_keys.set_defaults(run=_keys)

    hooks = commands.add_parser("webhooks", help="webhooks of jobs (works while serve runs)")
    hooks_commands = hooks.add_subparsers(dest="webhooks_command", required=True)
    hooks_commands.add_parser("secret", help="print the secret signing webhooks of jobs without an API key")
    hooks.set_defaults(run=_webhooks)

    models = commands.add_parser("models", help="model weights that do not ship with DrumScribe")
    models_commands = models.add_subparsers(dest="models_command", required=True)
    fetch = models_commands.add_parser("fetch", help="download and verify weights (needs internet)")
    fetch.add_argument("model", choices=("demucs",), help="which model")
    fetch.add_argument("--name", default="htdemucs", help="the Demucs model (default: %(default)s)")
    fetch.set_defaults(run=_fetch)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (AudioError, ModelError, OSError, ValueError, SeparationUnavailable, WeightsError) as error:
        print(f"drumscribe: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
