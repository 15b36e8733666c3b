from musify.events import AUTH_EVENTS, LISTEN_EVENTS, PAGE_VIEW_EVENTS, TOPICS, check_event
from tests.sample_events import DEVICE


def listen(**kw: object) -> dict[str, object]:
    ev: dict[str, object] = {
        "artist": "A",
        "song": "S",
        "duration": 200.5,
        "ts": 1,
        "sessionId": 2,
        "auth": "Logged In",
        "level": "free",
        "itemInSession": 0,
        **DEVICE,
    }
    ev.update(kw)
    return ev


def test_four_topics_with_eventsim_names() -> None:
    assert list(TOPICS) == [
        "listen_events",
        "page_view_events",
        "auth_events",
        "status_change_events",
    ]


def test_field_order_follows_eventsim() -> None:
    assert LISTEN_EVENTS.field_names[:4] == ("artist", "song", "duration", "ts")
    assert PAGE_VIEW_EVENTS.field_names[:3] == ("ts", "sessionId", "page")
    assert "auth" not in AUTH_EVENTS.field_names and "page" not in AUTH_EVENTS.field_names


def test_check_event() -> None:
    assert check_event(LISTEN_EVENTS, listen()) is None
    assert check_event(LISTEN_EVENTS, listen(userId=5, extra="ok")) is None
    assert "missing required field 'ts'" in str(
        check_event(LISTEN_EVENTS, {k: v for k, v in listen().items() if k != "ts"})
    )
    assert "zip" in str(check_event(LISTEN_EVENTS, listen(zip=1001)))
    assert "boolean" in str(check_event(LISTEN_EVENTS, listen(ts=True)))
    assert "out of range" in str(check_event(LISTEN_EVENTS, listen(itemInSession=2**40)))
    assert check_event(LISTEN_EVENTS, [1, 2]) is not None
    assert check_event(LISTEN_EVENTS, listen(userId=None)) is None
