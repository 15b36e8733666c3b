"""Where the lake's bytes live: a local folder or an object store (``gs://``).

The lake addresses its files by *keys*, ``/``-separated paths relative to the lake
root (``listen_events/date=2024-03-18/hour=16/part-b000000000007-00000.parquet``).
A ``Storage`` maps keys to one backend and offers the few operations the commit
protocol needs, with the guarantee each backend can give:

- ``LocalStorage``: files under a folder. A rename is atomic, and a write becomes
  durable with an fsync of the file and its folder.
- ``FsspecStorage``: any fsspec filesystem; ``gs://`` through gcsfs (Google's endpoint,
  or the emulator ``STORAGE_EMULATOR_HOST`` names, as the official clients do). An
  object appears whole or not at all, so an upload is the atomic step; a "move" is a
  server-side copy then a delete, so it is never used for anything a reader must see
  atomically *as a group* (the commit record is what makes a batch complete).

Listings never come from a cache: the commit protocol and the batch must see what is
in the bucket now, not what was there when the process first looked.
"""

from __future__ import annotations

import builtins
import contextlib
import os
import shutil
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from functools import cache
from pathlib import Path
from typing import IO, Any, ClassVar

from musify.errors import UsageError

#: gcsfs stalls 60 s on each bucket's first access while probing for hierarchical
#: namespaces unless told not to (platform notes); a lake bucket is a flat one.
_GCSFS_ENV = {"GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}
#: Schemes served through fsspec. ``memory`` exists for tests of the object-store path.
REMOTE_SCHEMES = ("gs", "gcs", "memory")


class Storage(ABC):
    """The lake's files by key; see the module docstring for each backend's guarantees."""

    #: Whether the files live outside this machine (an object store).
    remote: ClassVar[bool]

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def uri(self, key: str) -> str:
        """What an outside reader (DuckDB, pyarrow, BigQuery) opens for this key."""
        return f"{self.url}/{key}" if key else self.url

    @abstractmethod
    def read(self, key: str) -> bytes | None:
        """The object's bytes, or None when there is none."""

    @abstractmethod
    def write_atomic(self, key: str, data: bytes) -> None:
        """Write a small object so that readers see the old content or the new, durably."""

    @abstractmethod
    def open_write(self, key: str) -> contextlib.AbstractContextManager[IO[bytes]]:
        """A binary stream for a new file; the file is complete when the block exits."""

    @abstractmethod
    def move(self, pairs: Sequence[tuple[str, str]]) -> None:
        """Move files (source key, destination key); each destination appears whole."""

    @abstractmethod
    def list(self, prefix: str, suffix: str = ".parquet") -> list[str]:
        """Keys under ``prefix`` (recursively) ending in ``suffix``, sorted; hidden
        names (a leading ``.``, e.g. a writer's temporary file) are left out."""

    @abstractmethod
    def list_modified(self, prefix: str) -> builtins.list[tuple[str, float]]:
        """(key, last modified as epoch seconds) of every object under ``prefix``."""

    @abstractmethod
    def remove(self, keys: Iterable[str]) -> None:
        """Delete these files; missing ones are ignored."""

    @abstractmethod
    def remove_prefix(self, prefix: str) -> None:
        """Delete everything under ``prefix``; nothing there is fine."""

    def sync(self, keys: Iterable[str]) -> None:  # noqa: B027 - optional hook
        """Make the named files' directory entries durable (local filesystems)."""

    def check_writable(self) -> None:
        """Fail now, naming the lake, when it cannot be written (no bucket, no access),
        rather than in the first micro-batch."""
        try:
            self.write_atomic("_status/.probe", b"")
        except Exception as exc:
            raise UsageError(f"lake {self.url} is not writable: {exc}") from None

    def filesystem(self) -> Any:
        """A pyarrow-compatible filesystem for reading URIs of this storage, or None
        for local paths."""
        return None

    @abstractmethod
    def native_path(self, key: str) -> str:
        """The key as ``filesystem()`` names it (a local path, or fsspec's bucket/path)."""

    def read_parquet(self, keys: Sequence[str], columns: Sequence[str] | None = None) -> Any:
        """The rows of these Parquet files as one Arrow table."""
        return self._read([self.native_path(k) for k in keys], columns)

    def read_parquet_uris(self, uris: Sequence[str], columns: Sequence[str] | None = None) -> Any:
        """The same, for files named by URI (``uri()``, or a table's data file paths)."""
        return self._read([self.native_uri(u) for u in uris], columns)

    def _read(self, paths: Sequence[str], columns: Sequence[str] | None) -> Any:
        import pyarrow.dataset as ds

        dataset = ds.dataset(list(paths), format="parquet", filesystem=self.filesystem())
        return dataset.to_table(columns=None if columns is None else list(columns))

    def native_uri(self, uri: str) -> str:
        """A URI of this storage as ``filesystem()`` names it."""
        return uri.removeprefix("file://")

    def uri_exists(self, uri: str) -> bool:
        """Is the object named by this URI there now (never from a cache)?"""
        return os.path.exists(self.native_uri(uri))


def _visible(key: str) -> bool:
    return not key.rsplit("/", 1)[-1].startswith(".")


class LocalStorage(Storage):
    remote: ClassVar[bool] = False

    def __init__(self, root: Path | str) -> None:
        super().__init__(str(root))
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / key if key else self.root

    def native_path(self, key: str) -> str:
        return str(self.path(key))

    def read(self, key: str) -> bytes | None:
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError:
            return None

    def write_atomic(self, key: str, data: bytes) -> None:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        with tmp.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
        _fsync_dir(path.parent)

    @contextlib.contextmanager
    def open_write(self, key: str) -> Iterator[IO[bytes]]:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as f:
            yield f

    def move(self, pairs: Sequence[tuple[str, str]]) -> None:
        for src, dst in pairs:
            dest = self.path(dst)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.path(src), dest)  # atomic within one filesystem

    def list(self, prefix: str, suffix: str = ".parquet") -> list[str]:
        base = self.path(prefix)
        if not base.is_dir():
            return []
        keys = (p.relative_to(self.root).as_posix() for p in base.rglob(f"*{suffix}"))
        return sorted(k for k in keys if _visible(k))

    def list_modified(self, prefix: str) -> builtins.list[tuple[str, float]]:
        base = self.path(prefix)
        if not base.is_dir():
            return []
        out = []
        for p in base.rglob("*"):
            with contextlib.suppress(FileNotFoundError):
                if p.is_file():
                    out.append((p.relative_to(self.root).as_posix(), p.stat().st_mtime))
        return sorted(out)

    def remove(self, keys: Iterable[str]) -> None:
        for key in keys:
            self.path(key).unlink(missing_ok=True)

    def remove_prefix(self, prefix: str) -> None:
        shutil.rmtree(self.path(prefix), ignore_errors=True)

    def sync(self, keys: Iterable[str]) -> None:
        for d in {self.path(k).parent for k in keys}:
            _fsync_dir(d)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class FsspecStorage(Storage):
    remote: ClassVar[bool] = True

    def __init__(self, url: str, fs: Any = None) -> None:
        super().__init__(url)
        self.scheme = self.url.partition("://")[0]
        self.fs = fs if fs is not None else _filesystem(self.scheme)
        # fsspec's own form of the root ("bucket/prefix" for gcsfs): its listings use it.
        self.base = str(self.fs._strip_protocol(self.url)).rstrip("/")

    def _p(self, key: str) -> str:
        return f"{self.base}/{key}" if key else self.base

    def native_path(self, key: str) -> str:
        return self._p(key)

    def native_uri(self, uri: str) -> str:
        return str(self.fs._strip_protocol(uri))

    def uri_exists(self, uri: str) -> bool:
        self.fs.invalidate_cache()
        return bool(self.fs.exists(self.native_uri(uri)))

    def read(self, key: str) -> bytes | None:
        try:
            data: bytes = self.fs.cat_file(self._p(key))
        except FileNotFoundError:
            return None
        return data

    def write_atomic(self, key: str, data: bytes) -> None:
        self.fs.pipe_file(self._p(key), data)  # one upload: the object appears whole

    @contextlib.contextmanager
    def open_write(self, key: str) -> Iterator[IO[bytes]]:
        with self.fs.open(self._p(key), "wb") as f:
            yield f

    def move(self, pairs: Sequence[tuple[str, str]]) -> None:
        if not pairs:
            return
        srcs = [self._p(s) for s, _ in pairs]
        # Server-side copies, issued concurrently by fsspec, then the sources go.
        self.fs.copy(srcs, [self._p(d) for _, d in pairs])
        self.fs.rm(srcs)

    def list(self, prefix: str, suffix: str = ".parquet") -> list[str]:
        self.fs.invalidate_cache()
        start = len(self.base) + 1
        try:
            found = self.fs.find(self._p(prefix))
        except FileNotFoundError:
            return []
        keys = (str(p)[start:] for p in found if str(p).endswith(suffix))
        return sorted(k for k in keys if _visible(k))

    def list_modified(self, prefix: str) -> builtins.list[tuple[str, float]]:
        from datetime import datetime

        self.fs.invalidate_cache()
        start = len(self.base) + 1
        try:
            found = self.fs.find(self._p(prefix), detail=True)
        except FileNotFoundError:
            return []
        out = []
        for path, info in found.items():
            stamp = info.get("mtime") or info.get("updated") or info.get("created") or 0
            if isinstance(stamp, str):
                stamp = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
            elif isinstance(stamp, datetime):
                stamp = stamp.timestamp()
            out.append((str(path)[start:], float(stamp)))
        return sorted(out)

    def remove(self, keys: Iterable[str]) -> None:
        paths = [self._p(k) for k in keys]
        for p in paths:
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm_file(p)

    def remove_prefix(self, prefix: str) -> None:
        self.fs.invalidate_cache()
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(self._p(prefix), recursive=True)

    def filesystem(self) -> Any:
        return self.fs


@cache
def _filesystem(scheme: str) -> Any:
    """One fsspec filesystem per scheme and process (Spark tasks reuse it)."""
    for k, v in _GCSFS_ENV.items():
        os.environ.setdefault(k, v)
    try:
        import fsspec
    except ImportError:  # pragma: no cover - the gcp extra brings it
        raise UsageError(
            f"a {scheme}:// lake needs fsspec and gcsfs: pip install 'musify[gcp]'"
        ) from None
    options: dict[str, Any] = {}
    if scheme in ("gs", "gcs"):
        try:
            import gcsfs  # noqa: F401
        except ImportError:
            raise UsageError(f"a {scheme}:// lake needs gcsfs: pip install 'musify[gcp]'") from None
        if os.environ.get("STORAGE_EMULATOR_HOST"):
            options["token"] = "anon"  # the emulator takes no credentials
    return fsspec.filesystem(scheme, **options)


def open_storage(root: Path | str) -> Storage:
    """The storage for a lake root: a folder, or ``gs://bucket/prefix``."""
    text = str(root)
    if "://" not in text:
        return LocalStorage(root)
    scheme = text.split("://", 1)[0]
    if scheme not in REMOTE_SCHEMES:
        raise UsageError(
            f"lake {text}: unsupported scheme {scheme}:// (use a folder or gs://bucket/prefix)"
        )
    if not text.split("://", 1)[1].strip("/"):
        raise UsageError(f"lake {text}: name a bucket, e.g. gs://my-bucket/lake")
    return FsspecStorage(text)
