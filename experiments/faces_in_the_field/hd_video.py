"""The cam's video face detector on HD and 4K frames: a real face (the astronaut's, with its head around it) drifting
across a plain frame, 30 frames per case, found share and detector-only frames per second, with the cam's default
scanner (the 640-px search) and with ``--min-face 48`` (a finer upright search of each scanned frame).

    python experiments/faces_in_the_field/hd_video.py
"""

from __future__ import annotations

import time
from dataclasses import replace

import cv2
import numpy as np
from skimage import data

from emotion.serve.faces import VideoFaceDetector, iou, photo_detector, stream_scanner

SIZES = ((1280, 720), (1920, 1080), (3840, 2160))
FACES = (60, 100, 160)


def head() -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The astronaut's head and shoulders, and the face's box in it."""
    full = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    fx, fy, fw, fh = photo_detector().detect(full)[0][0]
    x0, y0 = max(0, fx - fw), max(0, fy - fh // 2)
    return full[y0 : fy + 2 * fh, x0 : fx + 2 * fw], (fx - x0, fy - y0, fw, fh)


def main() -> None:
    img, (x0, y0, w0, _) = head()
    for width, height in SIZES:
        for face in FACES:
            s = face / w0
            small = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
            frames, truths = [], []
            for i in range(30):
                frame = np.full((height, width, 3), 110, np.uint8)
                ox, oy = 200 + 8 * i, 20
                frame[oy : oy + small.shape[0], ox : ox + small.shape[1]] = small
                frames.append(frame)
                truths.append((int(ox + x0 * s), int(oy + y0 * s), face, face))
            for name, scanner in (
                ("default", stream_scanner()),
                ("min_face=48", replace(stream_scanner(), min_face=48)),
            ):
                detector = VideoFaceDetector(scanner)
                detector.reset()
                hits, t0 = 0, time.perf_counter()
                for frame, truth in zip(frames, truths):
                    boxes, _ = detector.detect(frame)
                    hits += any(iou(b, truth) >= 0.3 for b in boxes)
                fps = len(frames) / (time.perf_counter() - t0)
                print(f"{width}x{height} face {face} px, {name}: found {hits}/{len(frames)}, {fps:.1f} FPS", flush=True)


if __name__ == "__main__":
    main()
