"""The song catalog: what users play and how popular each song is.

Two sources:

- ``synthetic_catalog()`` (the default): a believable catalog generated
  deterministically, the same on every machine and every run, with no download and no
  shipped third-party data: about 10,000 songs by about 3,000 artists, song lengths
  like real recordings and a long-tailed popularity.
- ``load_catalog(path)``: eventsim's ``listen_counts.txt.gz`` format (tab-separated
  ``trackId, artist, title, duration, count``; gzip or plain; CRLF or LF), e.g. the
  Million Song subset the original pipeline used.

Fixed against eventsim (spec §6.3, §9.14): text is decoded as UTF-8 (latin-1 only for
lines that are not valid UTF-8), so no mojibake; CSV quoting artifacts (a field wrapped
in ``"…"`` with inner quotes escaped as ``\\"``) are undone; ``_ `` that stands for a
comma becomes ``, `` again.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from musify.errors import UsageError

#: eventsim's duration for a song with an empty duration field.
DEFAULT_DURATION = 180.0
_SYNTHETIC_SEED = 20_220_319  # fixed: the default catalog never changes between runs


@dataclass(frozen=True)
class Catalog:
    track_ids: tuple[str, ...]
    artists: tuple[str, ...]
    titles: tuple[str, ...]
    durations: npt.NDArray[np.float64]
    counts: npt.NDArray[np.float64]
    source: str

    def __post_init__(self) -> None:
        if not self.track_ids:
            raise UsageError(f"catalog {self.source}: no songs")
        if self.counts.sum() <= 0:
            raise UsageError(f"catalog {self.source}: every listen count is 0")

    def __len__(self) -> int:
        return len(self.track_ids)

    @property
    def cumulative(self) -> npt.NDArray[np.float64]:
        c = np.cumsum(self.counts)
        out: npt.NDArray[np.float64] = c / c[-1]
        return out


def _clean(field: str) -> str:
    s = field.strip()
    if len(s) >= 2 and s[0] == '"' and s[-1] == '"':
        s = s[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return s.replace("_ ", ", ")


def load_catalog(path: str | Path) -> Catalog:
    """Load eventsim's listen-counts format; a bad line fails with its line number."""
    p = Path(path)
    try:
        raw = p.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise UsageError(f"catalog {p}: cannot read ({exc})") from None
    ids: list[str] = []
    artists: list[str] = []
    titles: list[str] = []
    durations: list[float] = []
    counts: list[float] = []
    for n, line in enumerate(raw.split(b"\n"), start=1):
        line = line.rstrip(b"\r")
        if not line.strip():
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            text = line.decode("latin-1")
        parts = text.split("\t")
        if len(parts) != 5:
            raise UsageError(
                f"catalog {p}, line {n}: expected 5 tab-separated fields "
                f"(trackId, artist, title, duration, count), got {len(parts)}"
            )
        track, artist, title, dur, count = parts
        try:
            d = float(dur) if dur.strip() else DEFAULT_DURATION
            c = float(count)
        except ValueError:
            raise UsageError(
                f"catalog {p}, line {n}: duration {dur!r} and count {count!r} must be numbers"
            ) from None
        if not (d > 0 and c >= 0) or d != d or c != c:
            raise UsageError(f"catalog {p}, line {n}: duration must be > 0 and count >= 0")
        ids.append(track.strip())
        artists.append(_clean(artist))
        titles.append(_clean(title))
        durations.append(d)
        counts.append(c)
    return Catalog(
        tuple(ids),
        tuple(artists),
        tuple(titles),
        np.asarray(durations, dtype=np.float64),
        np.asarray(counts, dtype=np.float64),
        str(p),
    )


_ARTIST_FORMS = (
    "{first} {last}",
    "{first} {last}",
    "The {Adj} {Nouns}",
    "{Noun} {Noun}",
    "{first} {last} & The {Nouns}",
    "{Adj} {Noun}",
    "DJ {First}",
    "{last} {Nouns}",
    "{Noun} of {Nouns}",
    "{First}",
)
_TITLE_FORMS = (
    "{Noun}",
    "{Adj} {Noun}",
    "{Verb} {Prep} {Noun}",
    "The {Noun} {Verb}s",
    "{Noun} ({Adj} Mix)",
    "{Verb} Me {Adv}",
    "{Adj} {Noun} {Noun}",
    "{Noun} in {Noun}",
    "{Verb}",
    "{Adj} {Nouns} (Live)",
    "{Noun} {Noun}",
    "Don't {Verb} the {Noun}",
)


def synthetic_catalog(n_songs: int = 10_000, n_artists: int = 3_000) -> Catalog:
    """A deterministic catalog that looks like a music service's."""
    from faker.providers.lorem.en_US import Provider as Lorem
    from faker.providers.person.en_US import Provider as Person

    rng = np.random.Generator(np.random.PCG64(_SYNTHETIC_SEED))
    words = [w for w in Lorem.word_list if len(w) > 3]
    nouns, adjs, verbs = words[0::3], words[1::3], words[2::3]
    advs = ["Again", "Tonight", "Slowly", "Forever", "Now", "Away", "Home", "Down"]
    preps = ["Into", "Through", "Under", "After", "Without", "Around", "Beyond"]
    firsts = list(Person.first_names_male) + list(Person.first_names_female)
    lasts = list(Person.last_names)

    def pick(seq: list[str]) -> str:
        return seq[int(rng.integers(len(seq)))]

    def fill(form: str) -> str:
        return form.format(
            first=pick(firsts),
            First=pick(firsts),
            last=pick(lasts),
            Adj=pick(adjs).title(),
            Noun=pick(nouns).title(),
            Nouns=pick(nouns).title() + "s",
            Verb=pick(verbs).title(),
            Adv=pick(advs),
            Prep=pick(preps),
        )

    artist_names: list[str] = []
    seen: set[str] = set()
    while len(artist_names) < n_artists:
        name = fill(_ARTIST_FORMS[int(rng.integers(len(_ARTIST_FORMS)))])
        if name not in seen:
            seen.add(name)
            artist_names.append(name)
    # Songs per artist are long-tailed too: a few prolific artists, many with one song.
    artist_weight = rng.pareto(1.2, n_artists) + 1.0
    song_artist = rng.choice(n_artists, size=n_songs, p=artist_weight / artist_weight.sum())
    song_artist[:n_artists] = np.arange(n_artists)  # everyone has at least one song
    rng.shuffle(song_artist)
    artist_fame = rng.lognormal(0.0, 0.6, n_artists)
    # Zipf-like popularity over songs, modulated by the artist's fame.
    ranks = rng.permutation(n_songs) + 1
    counts = np.floor(40_000.0 / ranks**0.65 * artist_fame[song_artist]) + 1.0
    durations = np.clip(rng.lognormal(np.log(225.0), 0.33, n_songs), 45.0, 1200.0)
    durations = np.round(durations.astype(np.float32), 5).astype(np.float64)
    titles = [fill(_TITLE_FORMS[int(rng.integers(len(_TITLE_FORMS)))]) for _ in range(n_songs)]
    return Catalog(
        tuple(f"TRMSY{i:013d}" for i in range(n_songs)),
        tuple(artist_names[a] for a in song_artist),
        tuple(titles),
        durations,
        counts,
        "synthetic",
    )
