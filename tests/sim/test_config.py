"""Loading eventsim configs, and failing at load time with the offending key."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import orjson
import pytest

from musify.errors import ConfigError
from musify.sim.config import BUILTIN_CONFIG, State, load_config, parse_config


def raw_example(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads(path.read_bytes())
    return data


def test_example_config_loads_unchanged(example_config: Path) -> None:
    cfg = load_config(example_config)
    assert cfg.alpha == 90.0 and cfg.beta == 604800.0 and cfg.seed == 1
    assert cfg.weekend_damping_offset == 180 and cfg.churned_state == "Cancelled"
    assert len(cfg.states) == 40
    assert sum(len(d) for _, d in cfg.transitions) == 198
    assert set(cfg.new_session) == {
        ("Guest", "free"),
        ("Logged In", "free"),
        ("Logged In", "paid"),
        ("Logged Out", "free"),
        ("Logged Out", "paid"),
    }
    # identity is the 5-tuple: Home/Logged In/free and /paid are different states
    homes = [s for s in cfg.states if s.page == "Home" and s.auth == "Logged In"]
    assert {s.level for s in homes} == {"free", "paid"}
    login = cfg.states.index(State("Login", "Logged Out", 307, "PUT", "free"))
    assert cfg.stop_probability(login) == pytest.approx(0.0)


def test_builtin_config_loads() -> None:
    cfg = load_config(BUILTIN_CONFIG)
    pages = {s.page for s in cfg.states}
    assert {"NextSong", "Submit Upgrade", "Submit Downgrade", "Cancel", "Login"} <= pages


def test_defaults_when_keys_are_absent(example_config: Path) -> None:
    raw = raw_example(example_config)
    for key in ("alpha", "beta", "damping", "seed", "new-user-level"):
        raw.pop(key)
    cfg = parse_config(raw)
    assert (cfg.alpha, cfg.beta, cfg.damping, cfg.seed) == (60.0, 259200.0, 0.0625, 0)
    # eventsim's default "Free" matched no config (spec §9.8): the first level is used
    assert cfg.new_user_level == "free"


def _broken(example: dict[str, Any], edit: Any) -> dict[str, Any]:
    raw = copy.deepcopy(example)
    edit(raw)
    return raw


CASES = [
    (
        "probabilities above 1",
        lambda r: r["transitions"].append(
            {"source": r["transitions"][0]["source"], "dest": r["transitions"][0]["dest"], "p": 0.9}
        ),
        r"transitions\[198\]\.p: probabilities leaving state .* sum to",
    ),
    (
        "negative weight",
        lambda r: r["levels"][0].update(weight=-1),
        r"levels\[0\]\.weight: must be >= 0",
    ),
    (
        "negative probability",
        lambda r: r["transitions"][3].update(p=-0.1),
        r"transitions\[3\]\.p: must be >= 0",
    ),
    (
        "unknown state key",
        lambda r: r["transitions"][5]["source"].update(colour="red"),
        r"transitions\[5\]\.source\.colour: unknown key",
    ),
    ("unknown top-level key", lambda r: r.update({"sesion-gap": 10}), r"sesion-gap: unknown key"),
    (
        "missing show-user-details group",
        lambda r: r.update({"show-user-details": r["show-user-details"][1:]}),
        r"show-user-details: has no entry for auth 'Guest'",
    ),
    (
        "missing new-session group",
        lambda r: r.update(
            {
                "new-session": [
                    s for s in r["new-session"] if s["auth"] != "Logged Out" or s["level"] != "paid"
                ]
            }
        ),
        r"new-session: has no entry for auth 'Logged Out' and level 'paid'",
    ),
    (
        "new-session state unknown",
        lambda r: r["new-session"].append(
            {
                "page": "Nowhere",
                "method": "GET",
                "status": 200,
                "auth": "Guest",
                "level": "free",
                "weight": 1,
            }
        ),
        r"new-session\[25\]: state Nowhere/Guest/free does not appear in transitions",
    ),
    (
        "missing status",
        lambda r: r["transitions"][0]["dest"].pop("status"),
        r"transitions\[0\]\.dest\.status: is missing",
    ),
    ("wrong type", lambda r: r.update(alpha="fast"), r"alpha: must be a number"),
    ("missing transitions", lambda r: r.pop("transitions"), r"transitions: is missing"),
    (
        "bad show value",
        lambda r: r["show-user-details"][0].update(show="yes"),
        r"show-user-details\[0\]\.show: must be true or false",
    ),
]


@pytest.mark.parametrize(("name", "edit", "message"), CASES, ids=[c[0] for c in CASES])
def test_invalid_configs_name_the_key(
    example_config: Path, name: str, edit: Any, message: str
) -> None:
    raw = _broken(raw_example(example_config), edit)
    with pytest.raises(ConfigError, match=message):
        parse_config(raw, "test.json")


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"alpha": 1,\n "beta": }')
    with pytest.raises(ConfigError, match=r"bad.json: line 2: not valid JSON"):
        load_config(bad)
