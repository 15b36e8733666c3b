"""Where things are in the lake (a local folder or a gs:// prefix, the same layout).

```
lake/
  <topic>/date=YYYY-MM-DD/hour=HH/part-b<batch>-<n>.parquet    events, by event time (UTC)
  _quarantine/topic=<topic>/date=YYYY-MM-DD/part-b<batch>-<n>.parquet
  _commits/<batch>.json                                          one per committed batch
  _staging/, _status/                                            writers' private files
```

Files appear in their final place only complete (written elsewhere, then renamed), and
a batch's files are named after the batch, so a replayed batch can first remove what an
interrupted attempt left. Globs such as ``lake/listen_events/**/*.parquet`` are
therefore safe for any reader at any time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from pathlib import Path

from musify.errors import UsageError
from musify.events import TOPIC_NAMES
from musify.lake.storage import Storage, open_storage

QUARANTINE = "_quarantine"
COMMITS = "_commits"
#: Where writers stage files before the commit moves them into place (hidden from the
#: topic globs; inside the lake so that moves stay within one filesystem or bucket).
STAGING = "_staging"
#: The stream's latest status record, for orchestrators that cannot see its machine.
STATUS = "_status"
_PART = re.compile(r"^part-b(\d{12})-(\d{5})\.parquet$")


def part_name(batch_id: int, n: int) -> str:
    return f"part-b{batch_id:012d}-{n:05d}.parquet"


def batch_of(name: str) -> int | None:
    m = _PART.match(name)
    return int(m.group(1)) if m else None


def hour_folder(date: str, hour: int) -> str:
    return f"date={date}/hour={hour:02d}"


@dataclass(frozen=True)
class Lake:
    """A lake root: a local folder (``Path``) or an object-store URL (``gs://b/p``)."""

    root: Path | str

    def __post_init__(self) -> None:
        text = str(self.root)
        normal: Path | str = Path(self.root)
        if "://" in text:
            scheme, rest = text.split("://", 1)
            normal = f"{scheme}://{rest.rstrip('/')}"
        object.__setattr__(self, "root", normal)

    @cached_property
    def storage(self) -> Storage:
        return open_storage(self.root)

    @property
    def remote(self) -> bool:
        return isinstance(self.root, str)

    @property
    def url(self) -> str:
        return str(self.root)

    @property
    def local_root(self) -> Path:
        if isinstance(self.root, str):
            raise UsageError(f"lake {self.root}: this operation needs a local lake folder")
        return self.root

    # -- keys (any storage) ---------------------------------------------------------------
    @staticmethod
    def topic_key(topic: str) -> str:
        if topic not in TOPIC_NAMES:
            raise ValueError(f"unknown topic {topic!r}")
        return topic

    def hour_key(self, topic: str, hour: datetime) -> str:
        return f"{self.topic_key(topic)}/{hour_folder(f'{hour:%Y-%m-%d}', hour.hour)}"

    def hour_keys(self, topic: str, hour: datetime) -> list[str]:
        """Keys of the committed files of one topic and event hour (start of the hour)."""
        return self.storage.list(self.hour_key(topic, hour))

    def hour_files(self, topic: str, hour: datetime) -> list[str]:
        """URIs of the same files, for loaders that read by URI."""
        return [self.storage.uri(k) for k in self.hour_keys(topic, hour)]

    def glob(self, topic: str) -> str:
        """A glob for outside readers (DuckDB, pyarrow) over one topic's committed files."""
        return self.storage.uri(f"{self.topic_key(topic)}/**/*.parquet")

    # -- local folders (tests, the Spark-free writer, DuckDB globs) ---------------------------
    def topic_dir(self, topic: str) -> Path:
        return self.local_root / self.topic_key(topic)

    @property
    def quarantine_dir(self) -> Path:
        return self.local_root / QUARANTINE

    @property
    def commits_dir(self) -> Path:
        return self.local_root / COMMITS

    def data_dirs(self) -> list[Path]:
        return [self.topic_dir(t) for t in TOPIC_NAMES] + [self.quarantine_dir]

    def hour_dir(self, topic: str, date: str, hour: int) -> Path:
        return self.topic_dir(topic) / hour_folder(date, hour)
