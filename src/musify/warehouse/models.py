"""The dbt models Python reads, named in one place.

The hourly publication reconciles each topic's fact table with the lake
(``musify.orchestration.hourly``); the dashboard reads the marts
(``musify.dashboard.queries``). Both take the names from here, and
``tests/warehouse/test_models.py`` checks them against the manifest ``dbt parse``
writes for the project in ``musify/dbt``: a model renamed or dropped there fails that
test, not a dashboard at run time.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from musify.events import TOPIC_NAMES

#: Each topic's fact table: one row per distinct event (sessionId, itemInSession).
FACTS: Mapping[str, str] = MappingProxyType(
    {
        "listen_events": "fact_streams",
        "page_view_events": "fact_page_views",
        "auth_events": "fact_auth",
        "status_change_events": "fact_status_changes",
    }
)
assert set(FACTS) == set(TOPIC_NAMES)

#: The marts the dashboard reads; a warehouse without one of them is not built yet.
MARTS: tuple[str, ...] = (
    "mart_hourly_activity",
    "mart_user_activity_hourly",
    "mart_song_streams_daily",
    "mart_artist_streams_daily",
    "mart_status_changes_hourly",
    "mart_session_distributions_daily",
)

#: Every model Python names.
READ_MODELS: frozenset[str] = frozenset([*FACTS.values(), *MARTS])
