"""Near-identical faces: a 64-bit difference hash finds candidates, pixel agreement confirms them.

FER2013 holds the same photo more than once, sometimes across splits: a test face whose twin is in the training
set is scored by memory as much as by recognition. ``python -m emotion.audit`` reports such groups, and
``python -m emotion.evaluate exclude=twins`` scores a model without the evaluated faces that have a training twin.
"""

from __future__ import annotations

import cv2
import numpy as np

TWIN_SIZE = 48  # FER2013's faces as stored: twins are judged at this size, whatever size a model reads


def dhash(img: np.ndarray) -> int:
    """64-bit difference hash: robust to re-encoding, small brightness and contrast changes."""
    small = cv2.resize(img, (9, 8), interpolation=cv2.INTER_AREA).astype(np.int16)
    bits = (small[:, 1:] > small[:, :-1]).flatten()
    return int(np.packbits(bits).view(">u8")[0])


def near_duplicate_groups(images: np.ndarray, max_bits: int = 4, max_mad: float = 6.0) -> list[list[int]]:
    """Index groups of images (``N×H×W`` uint8) whose hashes differ in at most ``max_bits`` bits *and* whose pixels
    agree (mean absolute difference ≤ ``max_mad``): on smooth faces a 64-bit hash alone also matches different people.

    Candidates come from multi-index hashing: two hashes within 4 bits share at least one of their four 16-bit
    quarters exactly, so only images sharing a quarter are compared.
    """
    hashes = np.array([dhash(img) for img in images], dtype=np.uint64)
    pixels = images.astype(np.int16)
    parent = list(range(len(images)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for q in range(4):
        quarter = (hashes >> np.uint64(16 * q)) & np.uint64(0xFFFF)
        order = np.argsort(quarter, kind="stable")
        bounds = np.flatnonzero(np.diff(quarter[order])) + 1
        for bucket in np.split(order, bounds):
            if len(bucket) < 2 or len(bucket) > 3000:
                continue
            h = hashes[bucket]
            bits = np.bitwise_count(h[:, None] ^ h[None, :])
            for a, b in zip(*np.nonzero(np.triu(bits <= max_bits, k=1))):
                i, j = int(bucket[a]), int(bucket[b])
                if find(i) != find(j) and np.abs(pixels[i] - pixels[j]).mean() <= max_mad:
                    parent[find(i)] = find(j)
    groups: dict[int, list[int]] = {}
    for i in range(len(images)):
        groups.setdefault(find(i), []).append(i)
    return [g for g in groups.values() if len(g) > 1]


def has_twin_in(images: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Boolean mask over ``images``: True where a near-identical face is among ``reference`` (e.g. training)."""
    n = len(images)
    mask = np.zeros(n, bool)
    for group in near_duplicate_groups(np.concatenate([images, reference])):
        if any(i >= n for i in group):
            mask[[i for i in group if i < n]] = True
    return mask
