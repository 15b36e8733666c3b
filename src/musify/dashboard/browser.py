"""Driving the page in a real browser: Debian's Chromium through Playwright.

Used by the browser test, the benchmark and to refresh the README's screenshot::

    python -m musify.dashboard.browser http://127.0.0.1:8501/ docs/dashboard.png

Playwright's own browser download is never used (``playwright install`` needs the
internet): the system's Chromium (``apt-get install chromium``) is launched by path.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from musify.errors import MusifyError

CHROMIUM = "/usr/bin/chromium"
#: Wide enough for the three-column rows, tall enough to show every tile at once
#: (Streamlit scrolls inside the page, so a full-page screenshot would cut it).
VIEWPORT = {"width": 1440, "height": 2060}

#: True once the page finished a run: its content and every chart drawn, no rerun
#: pending. The page's last element is a marker carrying the filters it was drawn for.
_SETTLED = """(expected) => {
  const marker = document.querySelector('#musify-ready');
  const note = document.querySelector('[data-testid="stAlert"]');
  if (!marker && !note) return false;
  if (marker && expected !== null && marker.dataset.filters !== expected) return false;
  if (document.querySelector('[data-stale="true"]')) return false;
  const charts = document.querySelectorAll('[data-testid="stPlotlyChart"]');
  for (const c of charts) { if (!c.querySelector('.main-svg')) return false; }
  return !marker || charts.length >= Number(marker.dataset.charts);
}"""


def chromium_path() -> str:
    path = shutil.which("chromium") or (CHROMIUM if Path(CHROMIUM).exists() else None)
    if path is None:
        raise MusifyError("Chromium is not installed (apt-get install chromium)")
    return path


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium (Playwright Browser), closed afterwards."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise MusifyError(
            "Playwright is not installed: it is a test tool, in the dev extra "
            "(pip install -e '.[dev]')"
        ) from None

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium_path(),
            args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
        )
        try:
            yield browser
        finally:
            browser.close()


def wait_settled(page: Any, filters: str | None = None, timeout_s: float = 60.0) -> None:
    """Wait until the page is interactive (for ``filters``, the marker's text, if given)."""
    page.wait_for_function(_SETTLED, arg=filters, timeout=timeout_s * 1000, polling=50)


def load(page: Any, url: str, timeout_s: float = 60.0) -> float:
    """Open the page; seconds until it is interactive."""
    t0 = time.perf_counter()
    page.goto(url, wait_until="commit", timeout=timeout_s * 1000)
    wait_settled(page, timeout_s=timeout_s)
    return time.perf_counter() - t0


def server_ms(page: Any) -> dict[str, int]:
    """What the page's last run took on the server, in ms: ``page`` (the whole script)
    and ``live_read`` (the live section's read of the lake); absent before it is drawn."""
    data: dict[str, str] | None = page.evaluate(
        "() => { const r = document.querySelector('#musify-ready');"
        " const l = document.querySelector('#musify-live');"
        " return {page: r ? r.dataset.serverMs : null, live_read: l ? l.dataset.readMs : null}; }"
    )
    return {k: int(v) for k, v in (data or {}).items() if v}


def metrics(page: Any) -> dict[str, str]:
    """The headline numbers as shown: label -> value text."""
    out: dict[str, str] = {}
    for m in page.locator('[data-testid="stMetric"]').all():
        label = m.locator('[data-testid="stMetricLabel"]').inner_text().strip()
        out[label] = m.locator('[data-testid="stMetricValue"]').inner_text().strip()
    return out


def ranking(page: Any, name: str) -> list[list[str]]:
    """The rows of a ranked table (song, artist) as cell texts."""
    rows = page.locator(f'table[data-ranking="{name}"] tbody tr').all()
    return [[c.inner_text().strip() for c in r.locator("td").all()] for r in rows]


def live_marker(page: Any) -> dict[str, str]:
    """The live section's marker: its clock (newest committed listen, ISO), the listens
    in its 60-minute chart and the listen table's snapshot it was drawn from ('' when
    the section has nothing yet); empty before the section is drawn."""
    data: dict[str, str] | None = page.evaluate(
        "() => { const m = document.querySelector('#musify-live');"
        " return m ? {clock: m.dataset.clock, listens: m.dataset.listens,"
        " snapshot: m.dataset.snapshot} : null; }"
    )
    return data or {}


def age_labels(page: Any) -> list[str]:
    """The "data N s old" labels under the live tiles, as shown."""
    return [t.strip() for t in page.locator("div.musify-age").all_inner_texts()]


def choose_state(page: Any, label: str) -> None:
    """Pick an option of the state filter by its shown text (e.g. 'CA · California')."""
    page.get_by_test_id("stSelectbox").first.click()
    page.get_by_role("option", name=label, exact=True).click()


def screenshot(url: str, out: Path) -> Path:
    with chromium() as browser:
        page = browser.new_page(viewport=VIEWPORT)
        load(page, url)
        page.wait_for_timeout(500)  # let charts finish their transitions
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out))
    return out


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m musify.dashboard.browser URL OUT.png")
    print(screenshot(sys.argv[1], Path(sys.argv[2])))
