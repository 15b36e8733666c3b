"""Where things are in the lake (local folder; a gs:// lake follows the same layout).

```
lake/
  <topic>/date=YYYY-MM-DD/hour=HH/part-b<batch>-<n>.parquet    events, by event time (UTC)
  _quarantine/topic=<topic>/date=YYYY-MM-DD/part-b<batch>-<n>.parquet
  _commits/<batch>.json                                          one per committed batch
```

Files appear in their final place only complete (written elsewhere, then renamed), and
a batch's files are named after the batch, so a replayed batch can first remove what an
interrupted attempt left. Globs such as ``lake/listen_events/**/*.parquet`` are
therefore safe for any reader at any time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from musify.events import TOPIC_NAMES

QUARANTINE = "_quarantine"
COMMITS = "_commits"
_PART = re.compile(r"^part-b(\d{12})-(\d{5})\.parquet$")


def part_name(batch_id: int, n: int) -> str:
    return f"part-b{batch_id:012d}-{n:05d}.parquet"


def batch_of(name: str) -> int | None:
    m = _PART.match(name)
    return int(m.group(1)) if m else None


@dataclass(frozen=True)
class Lake:
    root: Path

    def topic_dir(self, topic: str) -> Path:
        if topic not in TOPIC_NAMES:
            raise ValueError(f"unknown topic {topic!r}")
        return self.root / topic

    def glob(self, topic: str) -> str:
        """A glob for outside readers (DuckDB, pyarrow) over one topic's committed files."""
        return str(self.topic_dir(topic) / "**" / "*.parquet")

    @property
    def quarantine_dir(self) -> Path:
        return self.root / QUARANTINE

    @property
    def commits_dir(self) -> Path:
        return self.root / COMMITS

    def data_dirs(self) -> list[Path]:
        return [self.topic_dir(t) for t in TOPIC_NAMES] + [self.quarantine_dir]

    def hour_dir(self, topic: str, date: str, hour: int) -> Path:
        return self.topic_dir(topic) / f"date={date}" / f"hour={hour:02d}"
