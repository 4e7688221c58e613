"""Heavy stages on other machines: workers that take only some stages (``drumscribe worker
--stages``) hand each job on through the stages' streams, with what the next stage needs stored
as a file of the job. Against a real (embedded) Redis, real worker processes (``decode,score`` as
a CPU pool, ``separate,detect`` as a GPU pool) and in-process workers where spans are read."""
from __future__ import annotations

import dataclasses
import json
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import soundfile as sf
import yaml
from opentelemetry import trace
from starlette.testclient import TestClient

from batch.connection import url_of
from batch.jobs import JobStore
from batch.pipeline import HANDOFF_FILES, StageClock, run_job
from batch.score import FILES as OUTPUT_FILES
from batch.stages import STAGES, parse_stages
from batch.worker import Worker
from models.synthetic import rock_beat
from tests.test_batch_service import _worker_process, submit, wait_for
from tests.test_tracing import assert_child, children, span_named, spans  # noqa: F401 (a fixture)
from web.app import create_app

CPU, GPU = "decode,score", "separate,detect"


@pytest.fixture(params=["local", "s3"])
def either_store(request, settings):
    """Job files in the data folder, then in a bucket of moto's S3 server."""
    if request.param == "local":
        return settings
    return dataclasses.replace(settings, storage=request.getfixturevalue("s3_storage"))


def streams_are_empty(store: JobStore) -> bool:
    return all(store.redis.xlen(store.stream_of(stage)) == 0 for stage in STAGES)


def wait_until(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@contextmanager
def stage_workers(client: TestClient, settings, *stage_sets: str, separation=None) -> Iterator[list[Worker]]:
    """In-process workers of ``stage_sets`` (threads of this process, so their spans are read here);
    ``separation`` goes to those that take the separate stage."""
    store = client.app.state.store
    workers = [Worker(JobStore(store.redis, settings), client.app.state.detector, settings, name=f"w-{stages}",
                      stages=parse_stages(stages), separation=separation if "separate" in stages else None)
               for stages in stage_sets]
    threads = [threading.Thread(target=worker.run, daemon=True) for worker in workers]
    for thread in threads:
        thread.start()
    try:
        yield workers
    finally:
        for worker in workers:
            worker.stop.set()
        for thread in threads:
            thread.join(timeout=30)


def test_stage_names_are_checked_and_ordered():
    assert parse_stages("score, decode") == ("decode", "score")
    with pytest.raises(ValueError, match="render"):
        parse_stages("decode,render")
    with pytest.raises(ValueError):
        parse_stages(",")


def test_compose_shows_a_cpu_pool_and_a_gpu_pool_that_share_every_stage():
    services = yaml.safe_load((Path(__file__).resolve().parents[1] / "docker-compose.yml").read_text())["services"]
    cpu, gpu = services["worker-cpu"], services["worker-gpu"]
    pools = [parse_stages(pool["command"][pool["command"].index("--stages") + 1]) for pool in (cpu, gpu)]
    assert pools == [parse_stages(CPU), parse_stages(GPU)] and sorted(pools[0] + pools[1]) == sorted(STAGES)
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["driver"] == "nvidia"
    assert "--stages" not in services["worker"]["command"]  # the default pool takes every stage
    for pool in (cpu, gpu):
        assert pool["restart"] == "unless-stopped" and pool["environment"]["REDIS_URL"]


def test_a_job_passes_a_cpu_worker_and_a_gpu_worker_and_every_download_works(either_store, beat_wav, tmp_path):
    settings = dataclasses.replace(either_store, workers=0)
    with TestClient(create_app(settings)) as client:
        redis_url = url_of(client.app.state.store.redis)
        pools = [_worker_process(settings, redis_url, "--stages", CPU, data_name="cpu-data"),
                 _worker_process(settings, redis_url, "--stages", GPU, data_name="gpu-data")]
        try:
            job_id = submit(client, beat_wav, title="Two pools").json()["id"]
            job = wait_for(client, job_id, timeout=120)
        finally:
            for process in pools:
                process.terminate()
            for process in pools:
                process.wait(timeout=30)
        assert job["status"] == "succeeded", job
        store = client.app.state.store
        record = store.get(job_id)
        # decode (CPU) -> separate, detect (GPU) -> score (CPU): handed on twice, one attempt each
        assert (record["hop"], record["attempts"], record["completions"]) == ("2", "3", "1")
        assert streams_are_empty(store)
        result = client.get(f"/api/v1/jobs/{job_id}/result").json()
        for download in OUTPUT_FILES:
            response = client.get(f"/api/v1/jobs/{job_id}/download/{download}")
            assert response.status_code == 200 and len(response.content) > 100, download
        assert client.get(f"/api/v1/jobs/{job_id}/download/json").json() == result
        storage = client.app.state.storage
        assert not any(storage.exists(job_id, name) for name in HANDOFF_FILES)

        # what the stages handed each other lost nothing: the same result as one worker's pipeline
        shutil.copy(beat_wav, tmp_path / "input.wav")
        run_job(client.app.state.detector, {"kind": "upload", "file": "input.wav"}, {"title": "Two pools"},
                tmp_path, StageClock(lambda *_: True), settings.max_upload_bytes, settings.max_seconds)
        alone = json.loads((tmp_path / OUTPUT_FILES["json"]).read_text())
        assert len(result["hits"]) > 40 and not result["separation"]["applied"]
        assert {**result, "separation": None} == {**alone, "separation": None}
    if settings.storage != "local":  # the API and both pools shared nothing but Redis and the bucket
        for data in ("data", "cpu-data", "gpu-data"):
            assert not [path for path in (settings.data_dir.parent / data).rglob("*") if job_id in str(path)]


def test_a_stage_worker_killed_mid_stage_is_replaced_and_the_job_ends_once(settings, long_beat_wav):
    api_only = dataclasses.replace(settings, workers=0)
    with TestClient(create_app(api_only)) as client:
        store = client.app.state.store
        redis_url = url_of(store.redis)
        cpu = _worker_process(settings, redis_url, "--stages", CPU)
        gpu = _worker_process(settings, redis_url, "--stages", GPU)
        spare = None
        try:
            job_id = submit(client, long_beat_wav).json()["id"]
            wait_until(lambda: store.get(job_id)["stage"] == "detect", timeout=120)
            gpu.send_signal(signal.SIGKILL)
            gpu.wait(timeout=10)
            held = store.get(job_id)
            assert (held["status"], held["hop"], held["stage"]) == ("running", "1", "detect")
            spare = _worker_process(settings, redis_url, "--stages", GPU)  # reclaims after the visibility timeout
            job = wait_for(client, job_id, timeout=120)
        finally:
            for process in (cpu, gpu, spare):
                if process is not None:
                    process.terminate()
                    process.wait(timeout=30)
        assert job["status"] == "succeeded", job
        record = store.get(job_id)
        # decode 1, detect 2 (killed) and 3 (the spare's), score 4; finished once
        assert (record["hop"], record["attempts"], record["completions"]) == ("2", "4", "1")
        assert streams_are_empty(store)
        assert client.get(f"/api/v1/jobs/{job_id}/download/pdf").status_code == 200


def test_cancel_while_the_job_is_in_a_middle_stage(settings, long_beat_wav):
    api_only = dataclasses.replace(settings, workers=0)
    with TestClient(create_app(api_only)) as client, stage_workers(client, settings, CPU, GPU):
        store = client.app.state.store
        job_id = submit(client, long_beat_wav).json()["id"]
        wait_until(lambda: store.get(job_id)["stage"] == "detect")
        assert store.get(job_id)["hop"] == "1"
        assert client.delete(f"/api/v1/jobs/{job_id}").json()["status"] == "cancelled"
        wait_until(lambda: streams_are_empty(store) and not store.redis.xpending(
            store.stream_of("detect"), settings.group_name)["pending"])
        time.sleep(0.5)  # the CPU worker would have scored it by now, had it been handed on
        record = store.get(job_id)
        assert record["status"] == "cancelled" and "completions" not in record
        assert "score" not in store.stage_totals()
        storage = client.app.state.storage
        assert storage.exists(job_id, "input.wav")
        assert not any(storage.exists(job_id, name) for name in [*OUTPUT_FILES.values(), *HANDOFF_FILES])


def test_the_gpu_pool_decides_on_separation_and_hands_the_drums_to_detection(settings, tmp_path):
    """Only the separate,detect worker has separation (a tiny Demucs made here): a full mix sent
    with separate=auto is judged and separated there, though the CPU worker that decoded it has none."""
    pytest.importorskip("demucs.htdemucs")
    from models.separation import Separation, load_separator, save_model
    from tests.test_separation import tiny_htdemucs, with_band

    separation = Separation(load_separator(save_model(tiny_htdemucs(), tmp_path, "tiny"), name="tiny", device="cpu"))
    drums, _ = rock_beat(bars=4, bpm=100, rate=44100)
    sf.write(mix := tmp_path / "mix.wav", with_band(drums, 44100), 44100)
    api_only = dataclasses.replace(settings, workers=0)
    with TestClient(create_app(api_only)) as client, stage_workers(client, settings, CPU, GPU, separation=separation):
        job_id = submit(client, mix, separate="auto").json()["id"]
        assert wait_for(client, job_id, timeout=120)["status"] == "succeeded"
        result = client.get(f"/api/v1/jobs/{job_id}/result").json()
        store = client.app.state.store
        assert result["separation"]["applied"] and result["separation"]["full_mix"]
        assert result["separation"]["model"] == "tiny"
        assert {"decode", "separate", "detect", "score"} <= set(store.stage_totals())
        assert store.get(job_id)["hop"] == "2"


def test_one_stage_per_worker_works_too(settings, beat_wav):
    api_only = dataclasses.replace(settings, workers=0)
    with TestClient(create_app(api_only)) as client, stage_workers(client, settings, *STAGES):
        job_id = submit(client, beat_wav).json()["id"]
        assert wait_for(client, job_id)["status"] == "succeeded"
        record = client.app.state.store.get(job_id)
        assert (record["hop"], record["attempts"], record["completions"]) == ("3", "4", "1")
        assert client.get(f"/api/v1/jobs/{job_id}/download/pdf").status_code == 200


def test_a_job_handed_between_workers_stays_one_trace(spans, settings, beat_wav):  # noqa: F811
    api_only = dataclasses.replace(settings, workers=0)
    with TestClient(create_app(api_only)) as client, stage_workers(client, settings, CPU, GPU):
        job_id = submit(client, beat_wav, title="Traced").json()["id"]
        assert wait_for(client, job_id)["status"] == "succeeded"
        hops = [span_named(spans, "job", **{"drumscribe.job_id": job_id, "drumscribe.hop": hop}) for hop in (0, 1, 2)]
    request = span_named(spans, "POST /api/v1/jobs")
    queue = span_named(spans, "queue", **{"drumscribe.job_id": job_id})
    assert_child(queue, request)
    for hop in hops:  # each hop's message carried the first one's trace context
        assert_child(hop, queue)
        assert hop.kind == trace.SpanKind.CONSUMER
    assert [hop.attributes["drumscribe.stages"] for hop in hops] == [CPU, GPU, CPU]
    assert "drumscribe.status" not in hops[0].attributes and hops[2].attributes["drumscribe.status"] == "succeeded"
    assert set(children(spans, hops[0])) == {"decode"}
    assert set(children(spans, hops[1])) == {"detect"}  # separation unavailable: decided, not run
    decode, detect = children(spans, hops[0])["decode"], children(spans, hops[1])["detect"]
    score = children(spans, hops[2])["score"]
    assert set(children(spans, hops[2])) == {"score"} and "render" in children(spans, score)
    # a hop's span ends just after it hands on, so the next may start first; its stages may not
    assert decode.end_time <= hops[1].start_time and detect.end_time <= hops[2].start_time


def test_health_is_degraded_while_a_stage_has_no_worker(settings):
    """A CPU pool without its GPU pool takes jobs that would stop at separation: /health says so."""
    api_only = dataclasses.replace(settings, workers=0)
    with TestClient(create_app(api_only)) as client:
        with stage_workers(client, settings, CPU):
            wait_until(lambda: client.get("/api/v1/health").json()["workers"]["alive"] == 1)
            report = client.get("/api/v1/health").json()
            assert report["status"] == "degraded"
            assert report["workers"]["by_stage"] == {"decode": 1, "separate": 0, "detect": 0, "score": 1}
            assert "separate, detect" in report["reason"]
            with stage_workers(client, settings, GPU):
                wait_until(lambda: client.get("/api/v1/health").json()["status"] == "ok")
        wait_until(lambda: client.get("/api/v1/health").json()["workers"]["alive"] == 0)  # stopped: forgotten at once
        assert client.get("/api/v1/health").json()["workers"]["by_stage"] == dict.fromkeys(STAGES, 0)
