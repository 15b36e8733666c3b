"""The disk-backed local broker's object store: ``python -m musify.broker.store DIR --port P``.

Tansu's ``s3://`` storage engine keeps each record batch, watermark and consumer-group
offset as an object; PyPI's ``localbucket`` serves them as plain files under DIR (an
S3-compatible server with the conditional PUTs Tansu coordinates with).
``musify.broker.local`` starts it on 127.0.0.1 when ``MUSIFY_BROKER_STORAGE=disk``.

Two things differ from ``localbucket`` run alone:

- **Listing from an index.** Tansu lists a partition's whole ``records/`` prefix on
  every fetch (1,000 keys a page), and localbucket answers each page by walking and
  sorting every file of the bucket. At 1,000,000 users replayed at 56x that made a
  fetch cost seconds after ten minutes (23,819 objects): the stream read nothing and
  stopped. Here a listing reads a sorted index of the keys under the prefix's folder,
  built from disk once and kept current by this server's own writes and deletes (it
  is the only writer), so a page costs a binary search and its 1,000 entries, whose
  size, time and ETag are kept too (localbucket stats each file twice per listing).
- **Retention** (``--retention-seconds``, from ``MUSIFY_BROKER_RETENTION_HOURS``):
  ``Retention`` deletes record batches written longer ago, keeping each partition's
  newest, so the files and the listings Tansu makes stop growing.
- Its per-request log is off: one line per produced batch would be most of the
  broker's log.
"""

from __future__ import annotations

import base64
import bisect
import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from http import HTTPStatus
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape


class KeyIndex:
    """Sorted object keys per (bucket folder, key folder), kept current by the
    server's writes and deletes. Keys sort as str, which is UTF-8 byte order: the
    order S3 lists in."""

    def __init__(self, temp_prefix: str) -> None:
        self._temp_prefix = temp_prefix
        self._lock = threading.Lock()
        self._keys: dict[tuple[str, str], list[str]] = {}
        #: An object's listing entry after its key (time, ETag, size), by its path,
        #: until the object changes.
        self._meta: dict[str, str] = {}
        #: Folders read from disk (the first listing under each); tests count them.
        self.scans = 0

    def keys(self, bucket_dir: Path, folder: str) -> list[str]:
        """Every key under ``folder`` ('' or ending in '/'), sorted. The caller must
        not change the list; it may change under later writes."""
        entry = (str(bucket_dir), folder)
        with self._lock:
            found = self._keys.get(entry)
            if found is None:
                # Under the lock: a write that lands during the scan is added after it.
                found = self._keys[entry] = self._scan(bucket_dir, folder)
            return list(found)

    def _scan(self, bucket_dir: Path, folder: str) -> list[str]:
        self.scans += 1
        top = bucket_dir / folder if folder else bucket_dir
        keys: list[str] = []
        for directory, _, files in os.walk(top):
            rel = Path(directory).relative_to(bucket_dir).as_posix()
            base = "" if rel == "." else rel + "/"
            keys.extend(base + name for name in files if not name.startswith(self._temp_prefix))
        keys.sort()
        return keys

    def meta(self, path: Path, read: Any) -> str:
        """``read(path)`` once per version of the object."""
        with self._lock:
            found = self._meta.get(str(path))
        if found is None:
            found = read(path)
            with self._lock:
                self._meta[str(path)] = found
        return found

    def added(self, bucket_dir: Path, key: str) -> None:
        with self._lock:
            self._meta.pop(str(bucket_dir / key), None)
            for (where, folder), keys in self._keys.items():
                if where == str(bucket_dir) and key.startswith(folder):
                    i = bisect.bisect_left(keys, key)
                    if i == len(keys) or keys[i] != key:
                        keys.insert(i, key)

    def removed(self, bucket_dir: Path, key: str) -> None:
        with self._lock:
            self._meta.pop(str(bucket_dir / key), None)
            for (where, folder), keys in self._keys.items():
                if where == str(bucket_dir) and key.startswith(folder):
                    i = bisect.bisect_left(keys, key)
                    if i < len(keys) and keys[i] == key:
                        del keys[i]

    def forget(self, bucket_dir: Path) -> None:
        with self._lock:
            for entry in [e for e in self._keys if e[0] == str(bucket_dir)]:
                del self._keys[entry]
            inside = str(bucket_dir) + os.sep
            for path in [p for p in self._meta if p.startswith(inside)]:
                del self._meta[path]


def page(
    keys: list[str], prefix: str, delimiter: str, marker: str, marker_is_prefix: bool, max_keys: int
) -> tuple[list[str], list[str], bool, str]:
    """One page of a listing over sorted ``keys``, as localbucket's own listing pages:
    keys and common prefixes after the marker, whether more follow, and the last entry
    ('K:key' or 'P:prefix') its continuation token is made from."""
    contents: list[str] = []
    common_prefixes: list[str] = []
    last_entry = ""
    truncated = False
    start = bisect.bisect_left(keys, prefix)
    if marker:
        start = max(start, bisect.bisect_right(keys, marker))
    for key in keys[start:]:
        if not key.startswith(prefix):
            break  # sorted: every later key is past the prefix too
        if marker_is_prefix and key.startswith(marker):
            continue
        common = ""
        if delimiter:
            index = key.find(delimiter, len(prefix))
            if index >= 0:
                common = key[: index + len(delimiter)]
        if common and common_prefixes and common_prefixes[-1] == common:
            continue
        if len(contents) + len(common_prefixes) >= max_keys:
            truncated = max_keys > 0
            break
        if common:
            common_prefixes.append(common)
            last_entry = "P:" + common
        else:
            contents.append(key)
            last_entry = "K:" + key
    return contents, common_prefixes, truncated, last_entry


def _element(tag: str, text: str) -> str:
    return f"<{tag}>{escape(text)}</{tag}>"


def install(handler: Any, localbucket: Any) -> KeyIndex:
    """Make ``handler`` (``localbucket.S3Handler`` or a subclass) list from a ``KeyIndex``."""
    from xml.etree import ElementTree as ET

    index = KeyIndex(localbucket.TEMP_PREFIX)
    write_object = handler._write_object
    delete_object = handler._delete_object
    delete_bucket = handler._delete_bucket

    def _list_entries(
        self: Any,
        bucket_dir: Path,
        prefix: str,
        delimiter: str,
        marker: str,
        marker_is_prefix: bool,
        max_keys: int,
    ) -> tuple[list[tuple[str, Path]], list[str], bool, str]:
        keys = index.keys(bucket_dir, prefix[: prefix.rfind("/") + 1])
        contents, common, truncated, last = page(
            keys, prefix, delimiter, marker, marker_is_prefix, max_keys
        )
        return [(k, bucket_dir / k) for k in contents], common, truncated, last

    def _read_meta(path: Path) -> str:
        stat = path.stat()
        etag = localbucket.object_etag(path)
        return (
            f"<LastModified>{localbucket.iso_timestamp(stat.st_mtime)}</LastModified>"
            f"<ETag>&quot;{etag}&quot;</ETag><Size>{stat.st_size}</Size>"
            "<StorageClass>STANDARD</StorageClass></Contents>"
        )

    def _entries(self: Any, contents: list[tuple[str, Path]], common: list[str]) -> list[str]:
        encode = self._list_encoder()
        out = []
        for key, path in contents:
            out.append(f"<Contents>{_element('Key', encode(key))}{index.meta(path, _read_meta)}")
        out.extend(
            f"<CommonPrefixes>{_element('Prefix', encode(c))}</CommonPrefixes>" for c in common
        )
        return out

    def _add_list_entries(
        self: Any, root: Any, contents: list[tuple[str, Path]], common: list[str], encode: Any
    ) -> None:
        # ListObjects (v1) still builds an ElementTree; Tansu uses v2 (below)
        for entry in _entries(self, contents, common):
            root.append(ET.fromstring(entry))

    def _list_objects_v2(self: Any, bucket: str) -> None:
        # localbucket's own, with the XML written as text: ElementTree's serializer took
        # most of a page's time (~40 ms for 1,000 keys)
        bucket_dir = self._bucket_dir(bucket)
        query = self.query
        prefix, delimiter = query.get("prefix", ""), query.get("delimiter", "")
        start_after, token = query.get("start-after", ""), query.get("continuation-token")
        max_keys = self._max_keys()
        marker, marker_is_prefix = start_after, False
        if token is not None:
            try:
                decoded = base64.urlsafe_b64decode(token.encode()).decode()
            except ValueError:
                decoded = ""
            if decoded[:2] not in ("K:", "P:"):
                raise localbucket.S3Error(
                    HTTPStatus.BAD_REQUEST,
                    "InvalidArgument",
                    "The continuation token provided is incorrect.",
                )
            marker, marker_is_prefix = decoded[2:], decoded.startswith("P:")
        contents, common, truncated, last = self._list_entries(
            bucket_dir, prefix, delimiter, marker, marker_is_prefix, max_keys
        )
        encode = self._list_encoder()
        head = [_element("Name", bucket), _element("Prefix", encode(prefix))]
        if delimiter:
            head.append(_element("Delimiter", encode(delimiter)))
        head.append(_element("MaxKeys", str(max_keys)))
        head.append(_element("KeyCount", str(len(contents) + len(common))))
        head.append(_element("IsTruncated", "true" if truncated else "false"))
        if token is not None:
            head.append(_element("ContinuationToken", token))
        if truncated:
            head.append(
                _element("NextContinuationToken", base64.urlsafe_b64encode(last.encode()).decode())
            )
        if start_after:
            head.append(_element("StartAfter", encode(start_after)))
        if query.get("encoding-type") == "url":
            head.append(_element("EncodingType", "url"))
        body = "".join(
            [
                "<?xml version='1.0' encoding='UTF-8'?>\n",
                f'<ListBucketResult xmlns="{localbucket.S3_NAMESPACE}">',
                *head,
                *_entries(self, contents, common),
                "</ListBucketResult>",
            ]
        )
        self._send(HTTPStatus.OK, body.encode(), {"Content-Type": "application/xml"})

    def _write_object(self: Any, bucket: str, key: str, write: Any) -> str:
        etag: str = write_object(self, bucket, key, write)
        index.added(self._bucket_dir(bucket), key)
        return etag

    def _delete_object(self: Any, bucket: str, key: str) -> None:
        # First: localbucket answers the client inside, and its next listing may come
        # before this thread goes on.
        index.removed(self._bucket_dir(bucket), key)
        delete_object(self, bucket, key)

    def _delete_bucket(self: Any, bucket: str) -> None:
        bucket_dir = self._bucket_dir(bucket)
        try:
            delete_bucket(self, bucket)
        finally:
            index.forget(bucket_dir)

    handler._list_entries = _list_entries
    handler._add_list_entries = _add_list_entries
    handler._list_objects_v2 = _list_objects_v2
    handler._write_object = _write_object
    handler._delete_object = _delete_object
    handler._delete_bucket = _delete_bucket
    return index


class Retention:
    """Deletes record batches written more than ``seconds`` ago, oldest first, keeping
    each partition's newest (Kafka deletes whole old segments, never the active one).
    Tansu then reports the partition's first remaining offset as its start and serves
    a fetch below it from there, as Kafka does after retention."""

    def __init__(self, data_root: Path, index: KeyIndex, seconds: float, forget: Any) -> None:
        self.data_root = data_root
        self.index = index
        self.seconds = seconds
        self._forget = forget  # drops a deleted file's cached ETag
        #: Batches deleted since start.
        self.deleted = 0

    def sweep(self, now: float | None = None) -> int:
        """Delete what is due; how many batches."""
        cutoff = (time.time() if now is None else now) - self.seconds
        n = 0
        # Tansu's layout: BUCKET/clusters/C/topics/T/partitions/P/records/OFFSET.batch
        for records in sorted(self.data_root.glob("*/clusters/*/topics/*/partitions/*/records")):
            bucket_dir = records.parents[6]
            folder = records.relative_to(bucket_dir).as_posix() + "/"
            batches = [k for k in self.index.keys(bucket_dir, folder) if k.endswith(".batch")]
            for key in batches[:-1]:
                path = bucket_dir / key
                try:
                    if path.stat().st_mtime >= cutoff:
                        break  # written in offset order: the rest is younger
                    path.unlink()
                except FileNotFoundError:
                    pass
                self.index.removed(bucket_dir, key)
                self._forget(path)
                n += 1
        self.deleted += n
        return n

    def run_forever(self) -> None:
        every = min(60.0, max(1.0, self.seconds / 10))
        while True:
            time.sleep(every)
            try:
                self.sweep()
            except OSError as exc:  # a folder that went away mid-sweep: next time
                logging.getLogger(__name__).warning("retention sweep: %s", exc)


@contextlib.contextmanager
def serve(data: Path, indexed: bool = True) -> Iterator[tuple[str, KeyIndex | None]]:
    """localbucket's server on ``data`` in this process, on a free 127.0.0.1 port, for
    tests and benchmarks: its URL and (``indexed``) the installed index. The index goes
    on a subclass, so localbucket's own handler stays as it is."""
    import localbucket

    class Handler(localbucket.S3Handler):  # type: ignore[misc]
        data_root = data

        def log_message(self, format: str, *args: Any) -> None:
            pass

    index = install(Handler, localbucket) if indexed else None
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", index
    finally:
        server.shutdown()
        server.server_close()


def main(argv: list[str] | None = None) -> None:
    # localbucket configures logging only if nothing has (logging.basicConfig).
    logging.basicConfig(
        level=logging.WARNING,
        format="%(asctime)s [%(levelname)s] %(name)s: %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S",
    )
    args = sys.argv[1:] if argv is None else list(argv)
    retention = 0.0
    if "--retention-seconds" in args:
        i = args.index("--retention-seconds")
        retention = float(args[i + 1])
        del args[i : i + 2]
    try:
        import localbucket
    except ImportError:
        sys.exit("the disk-backed broker needs localbucket: pip install 'musify[broker]'")
    index = install(localbucket.S3Handler, localbucket)
    if retention > 0 and args and not args[0].startswith("-"):
        root = Path(args[0]).resolve()

        def forget(path: Path) -> None:
            with localbucket._etag_lock:
                localbucket._etag_cache.pop(str(path), None)

        sweeper = Retention(root, index, retention, forget)
        threading.Thread(target=sweeper.run_forever, name="retention", daemon=True).start()
    sys.argv = ["localbucket", *args]
    localbucket.main()


if __name__ == "__main__":
    main()
