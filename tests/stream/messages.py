"""listen(): a valid listen_events message as a dict, for the stream parse, stage and job tests."""

from __future__ import annotations

from typing import Any

from tests.sample_events import DEVICE

USER = {
    "userId": 7,
    "lastName": "Doe",
    "firstName": "Jo",
    "gender": "F",
    "registration": 1_700_000_000_000,
}


def listen(**kw: Any) -> dict[str, Any]:
    return {
        "artist": "A",
        "song": "S",
        "duration": 201.5,
        "ts": 1_710_774_000_000,
        "sessionId": 3,
        "auth": "Logged In",
        "level": "paid",
        "itemInSession": 4,
        **DEVICE,
        **USER,
        **kw,
    }
