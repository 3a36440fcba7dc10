"""Song recommendations from a detected emotion (or a probability vector), on a valence/energy catalog.

Each emotion maps to a target region of (valence, energy); a probability vector maps to the probability-weighted
target. Two strategies:

- ``match`` mirrors the mood: the songs nearest the target;
- ``lift`` follows the *iso principle* of music therapy: start near the current mood, then move step by step
  toward positive valence (and moderate energy), one song per step.

Lists are diversified (no artist twice) and reproducible (seeded choice among the few nearest candidates).
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from urllib.parse import quote, quote_plus

import numpy as np

from emotion.labels import FER2013_CLASSES, canonical_name

log = logging.getLogger(__name__)

# (valence, energy) targets per emotion, on Spotify's 0–1 audio-feature scale.
EMOTION_TARGETS: dict[str, tuple[float, float]] = {
    "angry": (0.25, 0.9),
    "disgust": (0.3, 0.65),
    "fear": (0.25, 0.4),
    "happy": (0.85, 0.75),
    "sad": (0.2, 0.25),
    "surprise": (0.7, 0.8),
    "neutral": (0.5, 0.45),
}
LIFT_GOAL = (0.85, 0.6)
STRATEGIES = ("match", "lift")

TITLE_COLUMNS = ("title", "track_name", "name", "track")
ARTIST_COLUMNS = ("artist", "artists", "artist_name", "artist_names")


class CatalogError(ValueError):
    """A catalog file that cannot be used; the message says what is missing."""


@dataclass(frozen=True)
class Song:
    title: str
    artist: str
    valence: float
    energy: float
    tempo: float | None = None

    @property
    def query(self) -> str:
        return f"{self.title} {self.artist}"

    @property
    def spotify_url(self) -> str:
        return "https://open.spotify.com/search/" + quote(self.query, safe="")

    @property
    def youtube_url(self) -> str:
        return "https://www.youtube.com/results?search_query=" + quote_plus(self.query)


@dataclass
class Catalog:
    songs: list[Song]
    skipped: list[tuple[int, str]]  # (line, reason)
    source: str


def _pick(header: list[str], options: tuple[str, ...], what: str, path: str) -> str:
    for name in options:
        if name in header:
            return name
    raise CatalogError(f"{path}: no {what} column; expected one of {', '.join(options)} (found: {', '.join(header)})")


def load_catalog(path: str | Path | None = None) -> Catalog:
    """The shipped catalog, or a user CSV with ``title/track_name``, ``artist/artists``, ``valence``, ``energy``."""
    if path is None:
        text = resources.files("emotion.songs").joinpath("catalog.csv").read_text(encoding="utf-8")
        source = "shipped catalog (valence/energy are editorial estimates, see emotion/songs/README.md)"
    else:
        p = Path(path)
        if not p.is_file():
            raise CatalogError(f"catalog {p} does not exist")
        try:
            text, source = p.read_text(encoding="utf-8-sig"), str(p)
        except UnicodeDecodeError as exc:
            raise CatalogError(
                f"catalog {p} is not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start}): give a CSV "
                "file, saved as UTF-8 (Excel: 'CSV UTF-8'; Spotify exports already are)"
            ) from None
    rows = csv.DictReader(text.splitlines())
    header = [h.strip().lower() for h in (rows.fieldnames or [])]
    rows.fieldnames = header
    title_col = _pick(header, TITLE_COLUMNS, "title", source)
    artist_col = _pick(header, ARTIST_COLUMNS, "artist", source)
    for col in ("valence", "energy"):
        if col not in header:
            raise CatalogError(f"{source}: no '{col}' column (0–1 values, as in Spotify's audio features)")
    songs, skipped = [], []
    for line, row in enumerate(rows, start=2):
        try:
            valence, energy = float(row["valence"]), float(row["energy"])
            if not (0 <= valence <= 1 and 0 <= energy <= 1):
                raise ValueError("valence/energy outside 0..1")
            title, artist = (row[title_col] or "").strip(), (row[artist_col] or "").strip()
            if not title:
                raise ValueError("empty title")
            tempo = float(row["tempo"]) if row.get("tempo") else None
        except (TypeError, ValueError) as exc:
            skipped.append((line, str(exc)))
            continue
        artist = artist.strip("[]").replace("'", "").split(";")[0].strip()  # Spotify exports: "['A', 'B']" / "A;B"
        songs.append(Song(title, artist, valence, energy, tempo))
    if skipped:
        log.warning("%s: skipped %d rows, e.g. line %d: %s", source, len(skipped), *skipped[0])
    if not songs:
        raise CatalogError(f"{source}: no usable rows")
    return Catalog(songs, skipped, source)


def target_for(mood: str | np.ndarray | list[float], class_names: tuple[str, ...] = FER2013_CLASSES) -> np.ndarray:
    """An emotion name, or probabilities over ``class_names``, → the (valence, energy) target."""
    if isinstance(mood, str):
        return np.array(EMOTION_TARGETS[canonical_name(mood)])
    probs = np.asarray(mood, dtype=float)
    if probs.shape != (len(class_names),) or probs.min() < 0 or probs.sum() <= 0:
        raise ValueError(f"expected {len(class_names)} non-negative probabilities, got {probs}")
    targets = np.array([EMOTION_TARGETS[canonical_name(c)] for c in class_names])
    return (probs / probs.sum()) @ targets


def recommend(
    mood: str | np.ndarray | list[float],
    class_names: tuple[str, ...] = FER2013_CLASSES,
    n: int = 5,
    strategy: str = "match",
    catalog: Catalog | None = None,
    seed: int = 0,
    candidates: int = 3,
) -> list[Song]:
    """``n`` distinct songs (no artist twice) for a mood; the same arguments always give the same list."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    catalog = catalog or load_catalog()
    start = target_for(mood, class_names)
    if strategy == "match":
        waypoints = [start] * n
    else:
        waypoints = [start + (np.array(LIFT_GOAL) - start) * k / max(n - 1, 1) for k in range(n)]
    rng = np.random.default_rng(seed)
    points = np.array([(s.valence, s.energy) for s in catalog.songs])
    chosen: list[Song] = []
    artists: set[str] = set()
    for target in waypoints:
        order = np.argsort(np.linalg.norm(points - target, axis=1), kind="stable")
        free = [i for i in order if catalog.songs[i].artist.lower() not in artists and catalog.songs[i] not in chosen]
        if not free:
            break
        pick = catalog.songs[free[rng.integers(min(candidates, len(free)))]]
        chosen.append(pick)
        artists.add(pick.artist.lower())
    return chosen


def print_recommendations(songs: list[Song], mood: str = "") -> None:
    if mood:
        print(f"Songs for {mood}:")
    for i, s in enumerate(songs, 1):
        print(f"{i:2d}. {s.title} — {s.artist}  (valence {s.valence:.2f}, energy {s.energy:.2f})")
        print(f"    Spotify: {s.spotify_url}\n    YouTube: {s.youtube_url}")
