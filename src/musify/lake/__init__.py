"""The data lake: where events land, and the protocol that makes them exactly-once.

See README.md in this folder for the layout and the guarantees outside readers get.
"""

from musify.lake.commit import BatchCommit, commit_batch, committed_batches
from musify.lake.layout import QUARANTINE, Lake

__all__ = ["QUARANTINE", "BatchCommit", "Lake", "commit_batch", "committed_batches"]
