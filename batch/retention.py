"""Retention: finished jobs and their files expire; folders (or bucket prefixes) that no job owns are swept.

Workers run ``sweep_if_due`` at start and every ``sweep_minutes``; a lock in Redis lets one
worker of many do each sweep. A job that succeeded, failed or was cancelled more than
``retention_hours`` ago loses its record, its place in the recent list and its folder. A job
folder whose job does not exist (the API was killed mid-upload, the upload was refused while
Redis was down, Redis lost its data) is removed once nothing in it has changed for
``orphan_grace_minutes``, so an upload or a live recording still being written is left alone.
"""
from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass

from batch.config import Settings
from batch.jobs import JobStore
from batch.storage import Storage, open_storage, spool

log = logging.getLogger("drumscribe.retention")
SWEEP_LOCK = "drumscribe:sweep"
JOB_ID = re.compile(r"[0-9a-f]{32}")  # JobStore.new_id(); anything else in the folder is not ours


@dataclass(frozen=True)
class Swept:
    expired: int = 0   # job records (and their folders) removed after the retention time
    orphans: int = 0   # folders without a job record removed

    def __bool__(self) -> bool:
        return bool(self.expired or self.orphans)


def sweep(store: JobStore, settings: Settings, storage: Storage | None = None) -> Swept:
    """Remove expired jobs with their files, then orphaned job folders (in ``storage``, default the
    one ``settings`` names, and in this machine's spool of live recordings when that is elsewhere);
    returns what went."""
    now = time.time()
    store.recount()
    places = list(dict.fromkeys([storage or open_storage(settings), spool(settings)]))
    expired = 0
    if settings.retention_hours > 0:
        before = now - settings.retention_hours * 3600
        for job_id in store.created_before(before):
            if store.expire(job_id, before):
                for place in places:
                    place.delete(job_id)
                expired += 1
    orphans = 0
    idle_since = now - settings.orphan_grace_minutes * 60
    for place in places:
        for job_id, changed in list(place.listing()):
            if JOB_ID.fullmatch(job_id) and changed < idle_since and not store.exists(job_id):
                place.delete(job_id)
                orphans += 1
    return Swept(expired, orphans)


def sweep_if_due(store: JobStore, settings: Settings, storage: Storage, who: str) -> Swept | None:
    """Sweep unless another worker did within ``sweep_minutes``; None when it was not our turn."""
    lock_ms = max(1, int(settings.sweep_minutes * 60_000))
    if not store.redis.set(SWEEP_LOCK, who, nx=True, px=lock_ms):
        return None
    swept = sweep(store, settings, storage)
    if swept:
        log.info("retention sweep: %d expired jobs and %d orphaned folders removed", swept.expired, swept.orphans)
    return swept
