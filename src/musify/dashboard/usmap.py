"""US state outlines for the choropleth, drawn as plain polygons: no map tiles, no CDN.

Plotly's geo maps fetch their base map (topojson) from a CDN at page load, which a
dashboard on a machine without internet access cannot reach. So the map is drawn as
filled polygons on ordinary axes, from the Census Bureau's cartographic state
boundaries (1:500k, public domain) shipped by the ``plotly-geo`` package, read with
``pyshp``. They are projected like a printed US map (Albers equal-area conic, with
Alaska and Hawaii as insets below the Southwest), small islands dropped and simplified
with Ramer-Douglas-Peucker to about 1,500 points: drawn in milliseconds by the browser.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np
from numpy.typing import NDArray

from musify.errors import MusifyError

#: The shapefile's territories, which the events do not use: the map is the 50 states + DC.
TERRITORIES = frozenset({"AS", "GU", "MP", "PR", "VI"})
STATE_COUNT = 51
_SHAPEFILE = "cb_2016_us_state_500k.shp"

Points = NDArray[np.float64]


@dataclass(frozen=True)
class State:
    code: str
    name: str
    rings: tuple[Points, ...]  # closed outer rings, projected (x, y)

    def xy(self) -> tuple[list[float | None], list[float | None]]:
        """All rings as one polyline each, separated by None (one Plotly trace)."""
        xs: list[float | None] = []
        ys: list[float | None] = []
        for ring in self.rings:
            xs.extend(ring[:, 0].tolist())
            ys.extend(ring[:, 1].tolist())
            xs.append(None)
            ys.append(None)
        return xs, ys

    def centre(self) -> tuple[float, float]:
        """Centre of the bounding box of the largest ring (where a label goes)."""
        ring = max(self.rings, key=lambda r: abs(_area(r)))
        lo, hi = ring.min(axis=0), ring.max(axis=0)
        return float((lo[0] + hi[0]) / 2), float((lo[1] + hi[1]) / 2)


def _albers(
    lon: Points, lat: Points, lon0: float, lat0: float, p1: float, p2: float
) -> tuple[Points, Points]:
    """Albers equal-area conic projection (unit sphere) with standard parallels p1, p2."""
    phi, lam = np.radians(lat), np.radians(lon)
    lam0, phi0, phi1, phi2 = (math.radians(v) for v in (lon0, lat0, p1, p2))
    n = (math.sin(phi1) + math.sin(phi2)) / 2
    c = math.cos(phi1) ** 2 + 2 * n * math.sin(phi1)
    rho0 = math.sqrt(c - 2 * n * math.sin(phi0)) / n
    rho = np.sqrt(c - 2 * n * np.sin(phi)) / n
    theta = n * (lam - lam0)
    return rho * np.sin(theta), rho0 - rho * np.cos(theta)


def _area(ring: Points) -> float:
    x, y = ring[:, 0], ring[:, 1]
    return float(0.5 * np.sum(x[:-1] * y[1:] - x[1:] * y[:-1]))


def simplify(points: Points, tolerance: float) -> Points:
    """Ramer-Douglas-Peucker: drop points closer than ``tolerance`` to the simplified line."""
    n = len(points)
    if n < 3:
        return points
    keep = np.zeros(n, dtype=bool)
    keep[0] = keep[-1] = True
    stack = [(0, n - 1)]
    while stack:
        i, j = stack.pop()
        if j <= i + 1:
            continue
        a, b = points[i], points[j]
        seg = points[i + 1 : j]
        dx, dy = b - a
        length = math.hypot(dx, dy)
        if length == 0.0:
            dist = np.hypot(seg[:, 0] - a[0], seg[:, 1] - a[1])
        else:
            dist = np.abs(dx * (seg[:, 1] - a[1]) - dy * (seg[:, 0] - a[0])) / length
        k = int(np.argmax(dist))
        if dist[k] > tolerance:
            m = i + 1 + k
            keep[m] = True
            stack.extend(((i, m), (m, j)))
    return points[keep]


def _project(code: str, lon: Points, lat: Points) -> tuple[Points, Points]:
    if code == "AK":
        # the Aleutians cross the antimeridian: keep them west of it
        lon = np.where(lon > 0, lon - 360.0, lon)
        return _albers(lon, lat, -154.0, 50.0, 55.0, 65.0)
    if code == "HI":
        return _albers(lon, lat, -157.0, 3.0, 8.0, 18.0)
    return _albers(lon, lat, -96.0, 37.5, 29.5, 45.5)


def _place(rings: list[Points], box: tuple[float, float, float]) -> list[Points]:
    """Scale an inset to width ``box[2]`` and put its lower-left corner at box[:2]."""
    allp = np.concatenate(rings)
    lo, hi = allp.min(axis=0), allp.max(axis=0)
    k = box[2] / float(hi[0] - lo[0])
    return [(r - lo) * k + np.array(box[:2]) for r in rings]


@lru_cache(maxsize=1)
def us_states(tolerance: float = 0.0015) -> tuple[State, ...]:
    """The 50 states and DC, projected and simplified (computed once per process)."""
    try:
        import shapefile  # pyshp
    except ImportError as exc:  # pragma: no cover - the dashboard extra installs it
        raise MusifyError("the US map needs pyshp: pip install 'musify[dashboard]'") from exc
    try:
        shp = resources.files("_plotly_geo") / "package_data" / _SHAPEFILE
    except ModuleNotFoundError as exc:  # pragma: no cover
        raise MusifyError("the US map needs plotly-geo: pip install 'musify[dashboard]'") from exc
    raw: dict[str, tuple[str, list[Points]]] = {}
    with resources.as_file(shp) as path, shapefile.Reader(str(path)) as reader:
        for rec in reader.iterShapeRecords():
            code = str(rec.record["STUSPS"])
            if code in TERRITORIES:
                continue
            pts = np.asarray(rec.shape.points, dtype=np.float64)
            bounds = [*rec.shape.parts, len(pts)]
            rings = []
            for a, b in itertools.pairwise(bounds):
                x, y = _project(code, pts[a:b, 0], pts[a:b, 1])
                rings.append(np.column_stack([x, y]))
            raw[code] = (str(rec.record["NAME"]), rings)
    if len(raw) != STATE_COUNT or not {"AK", "HI"} <= set(raw):
        raise MusifyError(f"{_SHAPEFILE} has {len(raw)} states and DC, not {STATE_COUNT}")
    # Insets where a printed map has them: below California and Arizona.
    conus = np.concatenate([r for c, (_, rs) in raw.items() if c not in ("AK", "HI") for r in rs])
    (x0, y0), (x1, _) = conus.min(axis=0), conus.max(axis=0)
    width = float(x1 - x0)
    raw["AK"] = (raw["AK"][0], _place(raw["AK"][1], (x0, y0 - 0.02 * width, 0.22 * width)))
    raw["HI"] = (raw["HI"][0], _place(raw["HI"][1], (x0 + 0.25 * width, y0, 0.12 * width)))
    states = []
    for code, (name, rings) in sorted(raw.items()):
        biggest = max(abs(_area(r)) for r in rings)
        kept = []
        for ring in rings:
            # islands under 2 % of the state's main outline vanish at this scale
            if abs(_area(ring)) < 0.02 * biggest:
                continue
            small = simplify(ring, tolerance)
            if len(small) >= 4:
                kept.append(small)
        states.append(State(code, name, tuple(kept)))
    return tuple(states)


def state_names() -> dict[str, str]:
    return {s.code: s.name for s in us_states()}
