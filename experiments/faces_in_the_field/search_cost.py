"""What the photo detector's searches cost on a large photo: milliseconds and peak memory (RSS) for a blurred-noise
frame without faces, each case in a fresh process so that its peak is its own.

    python experiments/faces_in_the_field/search_cost.py

Cases: the shipped detector on 12 MP and on 48 MP (its finer search capped at ``FINE_MAX_PIXELS``), the 48-MP photo
with the cap lifted, and one search of a 12-MP photo at full resolution upright and turned by 0/±30° (why the finer
search runs upright only).
"""

from __future__ import annotations

import json
import subprocess
import sys

CASE = r"""
import json, resource, sys, time
from dataclasses import replace
import cv2, numpy as np
import emotion.serve.faces as faces
width, cap, full_turns = int(sys.argv[1]), sys.argv[2] == "cap", sys.argv[3]
if not cap:
    faces.FINE_MAX_PIXELS = 10**12
noise = np.random.default_rng(0).integers(0, 255, (width * 3 // 4, width, 3), dtype=np.uint8)
frame = cv2.GaussianBlur(noise, (0, 0), 3)
detector = faces.photo_detector()
if full_turns != "-":  # one search at full resolution, no finer one
    detector = replace(detector, detect_width=0, min_face=0, rotations=tuple(float(t) for t in full_turns.split(",")))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
detector.detect(frame)
ms = 1000 * (time.perf_counter() - t0)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"ms": round(ms), "peak_mb": peak // 1024, "before_mb": before // 1024}))
"""

CASES = [
    ("shipped, 12 MP", 4032, "cap", "-"),
    ("shipped, 48 MP (finer search capped at 16 MP)", 8000, "cap", "-"),
    ("48 MP, cap lifted (finer search at full resolution)", 8000, "nocap", "-"),
    ("12 MP, one search at full resolution, upright", 4032, "cap", "0"),
    ("12 MP, one search at full resolution, turned 0/±30°", 4032, "cap", "0,-30,30"),
]


def main() -> None:
    for name, width, cap, turns in CASES:
        out = subprocess.run([sys.executable, "-c", CASE, str(width), cap, turns], capture_output=True, text=True)
        if out.returncode:
            raise SystemExit(out.stderr[-2000:])
        print(f"{name}: {json.loads(out.stdout.strip().splitlines()[-1])}", flush=True)


if __name__ == "__main__":
    main()
