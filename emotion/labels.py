"""The one canonical class list of FER2013 and the mapping of folder names onto it.

The order is the original ``fer2013.csv`` label order (0 angry … 6 neutral). Folder names are mapped to it
by *name*, never by alphabetical position.
"""

from __future__ import annotations

FER2013_CLASSES: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")

# Spellings seen in FER2013 mirrors and derived data sets, mapped to the canonical name.
_ALIASES: dict[str, str] = {
    "anger": "angry",
    "disgusted": "disgust",
    "disgusting": "disgust",
    "fearful": "fear",
    "scared": "fear",
    "happiness": "happy",
    "joy": "happy",
    "sadness": "sad",
    "surprised": "surprise",
    "calm": "neutral",
}


class UnknownClassError(ValueError):
    """A folder or label name that is not one of the seven FER2013 emotions."""


def canonical_name(name: str) -> str:
    """Map a folder name such as ``Happy`` or ``surprised`` to the canonical class name."""
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in FER2013_CLASSES:
        accepted = ", ".join(FER2013_CLASSES)
        aliases = ", ".join(sorted(_ALIASES))
        raise UnknownClassError(
            f"unknown emotion class {name!r}. Accepted names (case-insensitive): {accepted}; "
            f"also accepted: {aliases}. Rename or remove that folder."
        )
    return key


def class_index(name: str, class_names: tuple[str, ...] | list[str] = FER2013_CLASSES) -> int:
    """Index of a (possibly aliased) class name in ``class_names``."""
    return list(class_names).index(canonical_name(name))
