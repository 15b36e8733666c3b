"""The ``musify_kafka`` source's offsets as Spark checkpoints them:
``{topic: {str(partition): next_offset}}`` plus metadata keys that start with ``$``
(``$topic_ids``; ``$fetched_at`` in the reported latest offset).

``to_offsets`` and ``from_offsets`` convert, ``topic_ids_of`` reads the ids, and
``fair_limit`` shares ``maxOffsetsPerTrigger`` between partitions. The driver's reader
(``reader``) uses them; the package docstring lists every part.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

TP = tuple[str, int]
Offsets = dict[str, Any]  # {topic: {str(partition): offset}}, plus "$..." metadata keys

#: Offsets' keys that are not topics start with this (never valid in a topic name).
META = "$"
#: In ``reportLatestOffset``: when the source asked the broker for these offsets (ISO
#: UTC), present only when every partition's end was confirmed by a fetch, so that
#: every record the broker acknowledged before that instant lies below them.
FETCHED_AT = "$fetched_at"
#: In offsets: ``{topic: topic id}``. A memory-only broker that restarts, or a topic
#: deleted and created again, gives the topic a new id and restarts its offsets at 0;
#: if it then holds more records than the checkpoint expects, offsets alone cannot
#: tell, the id can.
TOPIC_IDS = "$topic_ids"


def to_offsets(positions: Mapping[TP, int], topic_ids: Mapping[str, str] | None = None) -> Offsets:
    """``{(topic, partition): offset}`` as the checkpointed JSON form, in a canonical
    order (Spark compares offsets by their JSON text), with the ids of those topics
    the broker told (``$topic_ids``)."""
    out: Offsets = {}
    for (topic, partition), offset in sorted(positions.items()):
        out.setdefault(topic, {})[str(partition)] = int(offset)
    ids = {t: topic_ids[t] for t in sorted(out) if topic_ids and topic_ids.get(t)}
    if ids:
        out[TOPIC_IDS] = ids
    return out


def topic_ids_of(offsets: Mapping[str, Any] | None) -> dict[str, str]:
    """The topic ids an offset recorded; empty for offsets written before ids were
    kept (such checkpoints still load; their next offsets carry ids)."""
    ids = (offsets or {}).get(TOPIC_IDS)
    return {str(t): str(i) for t, i in ids.items()} if isinstance(ids, dict) else {}


def from_offsets(offsets: Mapping[str, Any] | None) -> dict[TP, int]:
    """The checkpointed JSON form back to ``{(topic, partition): offset}`` (keys that
    start with ``$`` carry metadata: no Kafka topic name can contain a ``$``)."""
    out: dict[TP, int] = {}
    for topic, parts in (offsets or {}).items():
        if topic.startswith(META):
            continue
        for partition, offset in dict(parts).items():
            out[(str(topic), int(partition))] = int(offset)
    return out


def fair_limit(froms: Mapping[TP, int], ends: Mapping[TP, int], max_offsets: int) -> dict[TP, int]:
    """End offsets that admit at most ``max_offsets`` offsets in total, shared max-min
    fairly: every partition gets the same share unless it has fewer available, whose
    leftover goes to the others. A remainder too small to share goes to the partitions
    furthest behind, so none starves when the limit is below the number of partitions.
    """
    avail = {tp: max(0, ends[tp] - froms[tp]) for tp in ends}
    if sum(avail.values()) <= max_offsets:
        return dict(ends)
    alloc = dict.fromkeys(avail, 0)
    remaining = max_offsets
    active = sorted((tp for tp, n in avail.items() if n > 0), key=lambda tp: (avail[tp], tp))
    while active and remaining > 0:
        share = remaining // len(active)
        if share == 0:
            behind = sorted(active, key=lambda tp: (-(avail[tp] - alloc[tp]), tp))
            for tp in behind[:remaining]:
                alloc[tp] += 1
            break
        give = min(share, min(avail[tp] - alloc[tp] for tp in active))
        for tp in active:
            alloc[tp] += give
        remaining -= give * len(active)
        active = [tp for tp in active if alloc[tp] < avail[tp]]
    return {tp: froms[tp] + alloc[tp] for tp in ends}
