"""Constants of ``musify.sim.validate``: tolerances, limits, file names, array aliases.

Leaf of the package (the package docstring lists every part): ``report``, ``read``,
``structure``, ``base``, ``topics``, ``users``, ``stats`` and ``checker`` import from
here, and this module imports none of them.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from musify.events import AUTH_EVENTS, LISTEN_EVENTS, PAGE_VIEW_EVENTS, STATUS_CHANGE_EVENTS

#: Standard errors a statistic may be off by.
Z = 4.5
#: Smallest tolerance of a share: absolute part (fraction) and relative part.
SHARE_FLOOR_ABS = 0.0005
SHARE_FLOOR_REL = 0.02
#: Smallest tolerance of a mean, relative to the expected value.
MEAN_FLOOR_REL = 0.03
#: Sessions counted by the statistics started at least this long before the last event.
COMPLETE_MARGIN = 12 * 3600
#: Violations quoted per failing check.
MAX_EXAMPLES = 3

DETAIL_KEYS = ("userId", "lastName", "firstName", "gender", "registration")
TOPIC_FILES = {
    t.name: f"{t.name}.jsonl"
    for t in (PAGE_VIEW_EVENTS, LISTEN_EVENTS, AUTH_EVENTS, STATUS_CHANGE_EVENTS)
}

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
Bool = npt.NDArray[np.bool_]
