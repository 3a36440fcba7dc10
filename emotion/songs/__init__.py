"""Emotion-driven song recommendations (see :mod:`emotion.songs.recommender`)."""

from emotion.songs.recommender import (
    EMOTION_TARGETS,
    Catalog,
    CatalogError,
    Song,
    load_catalog,
    print_recommendations,
    recommend,
    target_for,
)

__all__ = [
    "EMOTION_TARGETS",
    "Catalog",
    "CatalogError",
    "Song",
    "load_catalog",
    "print_recommendations",
    "recommend",
    "target_for",
]
