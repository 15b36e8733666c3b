"""The data lake: one Apache Iceberg table per topic and one for the quarantine.

See README.md in this folder for the layout, the commit protocol and the guarantees
outside readers get.
"""

from musify.lake.layout import QUARANTINE, Lake
from musify.lake.tables import LakeError

__all__ = ["QUARANTINE", "Lake", "LakeError"]
