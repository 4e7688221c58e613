"""Where job files live: folders on this machine, or an S3 bucket that the API and every worker share.

``DRUMSCRIBE_STORAGE=local`` keeps a job's files in ``<data>/jobs/<id>/``, so the API and the
workers must share that folder. ``s3://bucket/prefix`` keeps them as objects
``prefix/<id>/<name>`` in any store that speaks the S3 API (AWS, MinIO, Ceph); boto3 reads
the standard ``AWS_*`` settings, ``AWS_ENDPOINT_URL`` among them, and the API and workers
then share nothing but Redis and the bucket.

Work on files (checking an upload, transcribing) happens in a *workspace*: the job's own
folder when local, a temporary folder otherwise, filled from the bucket and emptied into it
with ``publish``. Large files move in streamed parts (boto3's multipart transfers), never
whole in memory.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import quote

if TYPE_CHECKING:
    from batch.config import Settings

CHUNK = 256 * 1024  # bytes per read when a stored file streams out


ByteRange = tuple[int, int | None]  # first and last byte (None: to the end), as HTTP's Range names them


class RangeNotSatisfiable(ValueError):
    """A byte range that starts at or past the end of the file, which is ``total`` bytes long."""

    def __init__(self, total: int) -> None:
        super().__init__(f"the range starts past the end of the file's {total} bytes")
        self.total = total


@dataclass(frozen=True)
class Blob:
    """A stored file, or the byte range of it that was asked for, opened for reading."""

    size: int                # the bytes ``chunks`` yields
    total: int               # the whole file's size
    first: int               # where they start in the file
    chunks: Iterator[bytes]  # as they arrive

    @property
    def content_range(self) -> str:
        return f"bytes {self.first}-{self.first + self.size - 1}/{self.total}"


class Storage(Protocol):
    def workspace(self, job_id: str, fetch: Iterable[str] = ()) -> contextlib.AbstractContextManager[Path]:
        """A folder to work on the job in, holding the stored files named in ``fetch``."""

    def publish(self, job_id: str, folder: Path, names: Iterable[str]) -> None:
        """Store ``names`` from ``folder`` (in order: the last one marks the set complete) as the job's
        files; they leave ``folder`` unless it is where this store keeps them."""

    def exists(self, job_id: str, name: str) -> bool: ...

    def read(self, job_id: str, name: str) -> bytes:
        """A small file whole; ``FileNotFoundError`` when it is not stored."""

    def write(self, job_id: str, name: str, data: bytes) -> None: ...

    def open(self, job_id: str, name: str, byte_range: ByteRange | None = None) -> Blob:
        """A file (or a byte range of it) to stream out; ``FileNotFoundError`` when it is not stored,
        ``RangeNotSatisfiable`` when the range starts past its end."""

    def path(self, job_id: str, name: str) -> Path | None:
        """The file on this machine, when the store is a local folder (served as a plain file)."""

    def presign(self, job_id: str, name: str, filename: str, media_type: str, seconds: int) -> str | None:
        """A URL the client may download the file from directly, or None when the store has none."""

    def discard(self, job_id: str, names: Iterable[str]) -> None:
        """Remove some of the job's files (or folders), as for a cancelled job's partial outputs."""

    def delete(self, job_id: str) -> None:
        """Remove all the job's files."""

    def listing(self) -> Iterator[tuple[str, float]]:
        """Each stored job id (or whatever else lies in the store) with the time of its last change."""


def last_change(path: Path) -> float:
    """The newest modification time of ``path`` and everything under it."""
    newest = path.lstat().st_mtime
    if path.is_dir() and not path.is_symlink():
        for child in path.rglob("*"):
            try:
                newest = max(newest, child.lstat().st_mtime)
            except FileNotFoundError:
                pass  # removed while we looked
    return newest


@dataclass(frozen=True)
class LocalStorage:
    """A folder per job under ``root``; files are worked on where they lie."""

    root: Path

    def folder(self, job_id: str) -> Path:
        return self.root / job_id

    @contextlib.contextmanager
    def workspace(self, job_id: str, fetch: Iterable[str] = ()) -> Iterator[Path]:
        folder = self.folder(job_id)
        folder.mkdir(parents=True, exist_ok=True)
        yield folder

    def publish(self, job_id: str, folder: Path, names: Iterable[str]) -> None:
        if folder.resolve() == self.folder(job_id).resolve():
            return
        self.folder(job_id).mkdir(parents=True, exist_ok=True)
        for name in names:
            shutil.move(folder / name, self.folder(job_id) / name)

    def exists(self, job_id: str, name: str) -> bool:
        return (self.folder(job_id) / name).is_file()

    def read(self, job_id: str, name: str) -> bytes:
        return (self.folder(job_id) / name).read_bytes()

    def write(self, job_id: str, name: str, data: bytes) -> None:
        target = self.folder(job_id) / name
        partial = target.with_name(f".{name}.partial")
        partial.write_bytes(data)
        partial.replace(target)  # whole or not at all, for a reader at the same moment

    def open(self, job_id: str, name: str, byte_range: ByteRange | None = None) -> Blob:
        file = (self.folder(job_id) / name).open("rb")
        total = os.fstat(file.fileno()).st_size
        first, last = byte_range or (0, None)
        if byte_range is not None and first >= total:
            file.close()
            raise RangeNotSatisfiable(total)
        size = (total if last is None else min(last + 1, total)) - first
        file.seek(first)

        def chunks() -> Iterator[bytes]:
            with file:
                left = size
                while left > 0 and (chunk := file.read(min(CHUNK, left))):
                    left -= len(chunk)
                    yield chunk

        return Blob(size, total, first, chunks())

    def path(self, job_id: str, name: str) -> Path | None:
        return self.folder(job_id) / name

    def presign(self, job_id: str, name: str, filename: str, media_type: str, seconds: int) -> str | None:
        return None

    def discard(self, job_id: str, names: Iterable[str]) -> None:
        for name in names:
            _remove(self.folder(job_id) / name)

    def delete(self, job_id: str) -> None:
        _remove(self.folder(job_id))

    def listing(self) -> Iterator[tuple[str, float]]:
        for path in self.root.iterdir() if self.root.is_dir() else ():
            try:
                yield path.name, last_change(path)
            except FileNotFoundError:
                continue  # removed while we looked


def _remove(path: Path) -> None:
    """A file or a folder with all in it (a link itself, not what it points to); none is fine."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


class StorageError(OSError):
    """The bucket could not be reached or refused a request: like a failing disk, not the caller's fault."""


class S3Storage:
    """Objects ``<prefix>/<job id>/<name>`` in one bucket; workspaces are temporary folders (under
    ``TMPDIR``) that go when the work is done. A missing object raises ``FileNotFoundError`` as a
    local file would; any other failure ``StorageError``."""

    def __init__(self, bucket: str, prefix: str = "") -> None:
        import boto3  # only deployments that use a bucket pay for importing boto3

        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.client = boto3.client("s3")  # region, credentials and endpoint from the AWS_* settings

    def __eq__(self, other: object) -> bool:
        return isinstance(other, S3Storage) and (self.bucket, self.prefix) == (other.bucket, other.prefix)

    def __hash__(self) -> int:
        return hash((self.bucket, self.prefix))

    def key(self, job_id: str, name: str = "") -> str:
        return "/".join(part for part in (self.prefix, job_id, name) if part) + ("" if name else "/")

    @contextlib.contextmanager
    def _errors(self, key: str) -> Iterator[None]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except ClientError as error:
            if _code(error) in ("404", "NoSuchKey", "NotFound"):  # not NoSuchBucket
                raise FileNotFoundError(f"s3://{self.bucket}/{key}") from error
            raise StorageError(f"s3://{self.bucket}/{key}: {error}") from error
        except BotoCoreError as error:
            raise StorageError(f"s3://{self.bucket}/{key}: {error}") from error

    @contextlib.contextmanager
    def workspace(self, job_id: str, fetch: Iterable[str] = ()) -> Iterator[Path]:
        with tempfile.TemporaryDirectory(prefix=f"drumscribe-{job_id}-") as scratch:
            folder = Path(scratch)
            for name in fetch:
                with self._errors(key := self.key(job_id, name)):
                    self.client.download_file(self.bucket, key, str(folder / name))
            yield folder

    def publish(self, job_id: str, folder: Path, names: Iterable[str]) -> None:
        for name in names:
            with self._errors(key := self.key(job_id, name)):
                self.client.upload_file(str(folder / name), self.bucket, key)
            (folder / name).unlink()

    def exists(self, job_id: str, name: str) -> bool:
        try:
            with self._errors(key := self.key(job_id, name)):
                self.client.head_object(Bucket=self.bucket, Key=key)
        except FileNotFoundError:
            return False
        return True

    def read(self, job_id: str, name: str) -> bytes:
        return b"".join(self.open(job_id, name).chunks)

    def write(self, job_id: str, name: str, data: bytes) -> None:
        with self._errors(key := self.key(job_id, name)):
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data)

    def open(self, job_id: str, name: str, byte_range: ByteRange | None = None) -> Blob:
        key = self.key(job_id, name)
        request = {"Bucket": self.bucket, "Key": key}
        if byte_range is not None:
            first, last = byte_range
            request["Range"] = f"bytes={first}-{'' if last is None else last}"
        try:
            with self._errors(key):
                reply = self.client.get_object(**request)
        except StorageError as error:
            if _code(error.__cause__) == "InvalidRange":
                with self._errors(key):
                    total = int(self.client.head_object(Bucket=self.bucket, Key=key)["ContentLength"])
                raise RangeNotSatisfiable(total) from error
            raise
        body, size = reply["Body"], int(reply["ContentLength"])
        whole = reply.get("ContentRange")  # "bytes first-last/total" when a range was asked
        first, total = (int(whole.split()[1].split("-")[0]), int(whole.rsplit("/", 1)[1])) if whole else (0, size)

        def chunks() -> Iterator[bytes]:
            with contextlib.closing(body), self._errors(key):
                yield from body.iter_chunks(CHUNK)

        return Blob(size, total, first, chunks())

    def path(self, job_id: str, name: str) -> Path | None:
        return None

    def presign(self, job_id: str, name: str, filename: str, media_type: str, seconds: int) -> str:
        params = {"Bucket": self.bucket, "Key": self.key(job_id, name), "ResponseContentType": media_type,
                  "ResponseContentDisposition": attachment(filename)}
        with self._errors(params["Key"]):
            return self.client.generate_presigned_url("get_object", Params=params, ExpiresIn=seconds)

    def discard(self, job_id: str, names: Iterable[str]) -> None:
        self._delete_keys([self.key(job_id, name) for name in names])

    def delete(self, job_id: str) -> None:
        for page in self._pages(self.key(job_id)):
            self._delete_keys([item["Key"] for item in page.get("Contents", ())])

    def listing(self) -> Iterator[tuple[str, float]]:
        newest: dict[str, float] = {}
        start = len(self.key(""))
        for page in self._pages(self.key("")):
            for item in page.get("Contents", ()):
                job_id = item["Key"][start:].split("/", 1)[0]
                newest[job_id] = max(newest.get(job_id, 0.0), item["LastModified"].timestamp())
        yield from newest.items()

    def _pages(self, prefix: str) -> Iterator[dict]:
        """The objects under ``prefix``, a page (at most 1000, as many as one delete takes) at a time."""
        with self._errors(prefix):
            yield from self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)

    def _delete_keys(self, keys: list[str]) -> None:
        if keys:
            with self._errors(keys[0]):
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True})


def _code(error: BaseException | None) -> str | None:
    """The S3 error code of a botocore ``ClientError`` (``NoSuchKey``, ``InvalidRange``, …)."""
    return getattr(error, "response", {}).get("Error", {}).get("Code")


def attachment(filename: str) -> str:
    """A Content-Disposition that names the download (RFC 6266, any characters)."""
    return f"attachment; filename*=utf-8''{quote(filename)}"


def parse_location(location: str) -> tuple[str, str] | None:
    """``s3://bucket/prefix`` as (bucket, prefix); None for ``local``; ValueError for anything else."""
    if location == "local":
        return None
    if location.startswith("s3://"):
        bucket, _, prefix = location[5:].partition("/")
        if bucket:
            return bucket, prefix.strip("/")
    raise ValueError(f"DRUMSCRIBE_STORAGE must be 'local' or s3://bucket[/prefix], not {location!r}")


def open_storage(settings: Settings) -> Storage:
    """The store ``settings.storage`` names."""
    place = parse_location(settings.storage)
    if place is None:
        return LocalStorage(settings.jobs_dir)
    return S3Storage(*place)


def spool(settings: Settings) -> LocalStorage:
    """This machine's job folders: the store itself when local, else where live recordings are
    written until their session ends (they are published to the bucket then)."""
    return LocalStorage(settings.jobs_dir)
