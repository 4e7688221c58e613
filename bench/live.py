"""Live latency and capacity: N clients stream a drum recording at real-time pace over loopback.

The server is a real ``drumscribe serve`` process. Each client sends ``--frame-ms`` frames
of 16-bit PCM on a fixed real-time schedule and notes when it sent each sample; a hit's
latency is its arrival time minus the send time of the frame holding the hit's sample.
Per N it reports latency percentiles over all hits, the CPU use of the server (with its
scorer process, which tracks the tempo and renders the notation, and its embedded Redis) and of this load generator, frames the
client could not send on time (late audio), and sessions whose hits fell behind.
Usage: ``python bench/live.py [--clients 1,8,32,64] [--seconds 20] [--audio FILE]``;
by default the first MDB drums recording in ../shared/data/mdb-dev, else a synthetic beat.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import websockets

from models.audio import load_audio

RATE = 48000
MDB = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mdb-dev"
BEHIND_SECONDS = 0.25  # a session whose median latency exceeds this did not keep real time


def recording(path: str | None, seconds: float) -> np.ndarray:
    if path is None:
        found = sorted(MDB.glob("*_drums.wav"))
        path = str(found[0]) if found else None
    if path is None:
        from models.synthetic import rock_beat
        audio, _ = rock_beat(bars=int(seconds / 2.4) + 1, bpm=100, rate=RATE)
    else:
        audio = load_audio(path, RATE)
    audio = audio[: int(seconds * RATE)]
    return (np.clip(audio, -1, 1 - 2**-15) * 32768).astype("<i2")


async def client(url: str, pcm: np.ndarray, frame: int, start_at: float) -> dict:
    latencies, late_frames = [], 0
    sent_at = np.zeros(len(pcm) // frame + 1)
    async with websockets.connect(url, max_size=None, compression=None) as ws:
        await ws.send(json.dumps({"type": "start", "sample_rate": RATE, "channels": 1, "encoding": "s16le"}))
        ready = json.loads(await ws.recv())
        assert ready["type"] == "ready", ready

        async def receive() -> None:
            async for message in ws:
                data = json.loads(message)
                if data["type"] == "hits":
                    now = time.perf_counter()
                    for hit in data["hits"]:
                        index = min(int(hit["t"] * RATE) // frame, len(sent_at) - 1)
                        latencies.append(now - sent_at[index])
                elif data["type"] in ("final", "error"):
                    return

        reader = asyncio.create_task(receive())
        for index, start in enumerate(range(0, len(pcm), frame)):
            due = start_at + (start + frame) / RATE  # a frame leaves once it has been "captured"
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.02:
                late_frames += 1
            sent_at[index] = time.perf_counter()
            await ws.send(pcm[start:start + frame].tobytes())
        await ws.send(json.dumps({"type": "stop"}))
        try:  # the last hits come at once; the final score is not timed here
            await asyncio.wait_for(reader, timeout=5)
        except asyncio.TimeoutError:
            pass
    return {"latencies": latencies, "late_frames": late_frames, "frames": len(sent_at)}


async def run_clients(url: str, n: int, pcm: np.ndarray, frame: int) -> list[dict]:
    start_at = time.perf_counter() + 0.5
    offsets = np.linspace(0, frame / RATE, n, endpoint=False)  # clients do not send in lockstep
    return await asyncio.gather(*(client(url, pcm, frame, start_at + o) for o in offsets))


def server_processes(pid: int) -> list[psutil.Process]:
    """The server and what it started (its scorer process, the embedded Redis), once all are up."""
    time.sleep(2)
    server = psutil.Process(pid)
    return [server, *server.children(recursive=True)]


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        try:
            total += sum(process.cpu_times()[:2])
        except psutil.NoSuchProcess:
            pass
    return total


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(n: int, pcm: np.ndarray, frame: int, notation: str) -> dict:
    port = free_port()
    with tempfile.TemporaryDirectory() as data:
        env = {**os.environ, "DRUMSCRIBE_DATA": data, "DRUMSCRIBE_WORKERS": "0",  # scores are not timed here
               "DRUMSCRIBE_LIVE_MAX_SESSIONS": str(max(64, n)), "DRUMSCRIBE_LIVE_MAX_PER_CLIENT": str(n),  # all from one address
               "DRUMSCRIBE_LIVE_NOTATION_SECONDS": notation,
               "DRUMSCRIBE_LIVE_FINALIZE_SECONDS": "5"}  # without workers, shutdown need not wait for scores
        server = subprocess.Popen([sys.executable, "-m", "web.cli", "serve", "--port", str(port)], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            processes = server_processes(server.pid)
            generator = psutil.Process()
            server_before, client_before = cpu_seconds(processes), cpu_seconds([generator])
            wall_before = time.perf_counter()
            results = asyncio.run(run_clients(f"ws://127.0.0.1:{port}/api/v1/stream", n, pcm, frame))
            wall = time.perf_counter() - wall_before
            cpu = (cpu_seconds(processes) - server_before) / wall
            client_cpu = (cpu_seconds([generator]) - client_before) / wall
        finally:
            server.terminate()  # a clean shutdown also stops the server's embedded Redis
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    latencies = np.concatenate([r["latencies"] for r in results]) * 1000
    behind = sum(1 for r in results if not r["latencies"] or statistics.median(r["latencies"]) > BEHIND_SECONDS)
    return {
        "n": n, "hits": len(latencies),
        "p50": float(np.percentile(latencies, 50)), "p95": float(np.percentile(latencies, 95)),
        "p99": float(np.percentile(latencies, 99)), "cpu": cpu * 100, "client_cpu": client_cpu * 100,
        "late_frames": sum(r["late_frames"] for r in results), "frames": sum(r["frames"] for r in results),
        "behind": behind,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", default="1,8,32,64")
    parser.add_argument("--seconds", type=float, default=20.0)
    # 20 ms: what the browser client's AudioWorklet sends, and one Opus packet over WebRTC
    parser.add_argument("--frame-ms", type=float, default=20.0)
    parser.add_argument("--notation-seconds", default="4", help="server's notation interval (0: off)")
    parser.add_argument("--audio", default=None)
    args = parser.parse_args()
    pcm = recording(args.audio, args.seconds)
    frame = int(RATE * args.frame_ms / 1000)
    print(f"{args.seconds:g} s of 48 kHz s16le per client in {args.frame_ms:g} ms frames, "
          f"notation every {args.notation_seconds} s; latency = hit arrival - send time of its sample")
    print("| clients | hits | p50 ms | p95 ms | p99 ms | server CPU % | load generator CPU % | late frames "
          "| sessions behind |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for n in [int(x) for x in args.clients.split(",")]:
        r = measure(n, pcm, frame, args.notation_seconds)
        print(f"| {n} | {r['hits']} | {r['p50']:.1f} | {r['p95']:.1f} | {r['p99']:.1f} | {r['cpu']:.0f} | {r['client_cpu']:.0f} "
              f"| {r['late_frames']}/{r['frames']} | {r['behind']}/{n} |", flush=True)


if __name__ == "__main__":
    main()
