"""The video face detector: small faces found, known faces followed between whole-frame searches, lost ones dropped."""

import cv2
import numpy as np
import pytest

from emotion.serve.cam import main as cam_main
from emotion.serve.faces import FaceDetector, VideoFaceDetector, iou


@pytest.fixture(scope="module")
def photo() -> tuple[np.ndarray, np.ndarray]:
    """The astronaut photo (BGR) and its face box found by a fine search."""
    skimage_data = pytest.importorskip("skimage.data")
    img = cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2BGR)
    return img, FaceDetector(detect_width=0)(img)[0]


def frame_with_face(photo, face_width: int, cx: int, cy: int = 240) -> tuple[np.ndarray, tuple[int, ...]]:
    """A 640×480 frame with the photo scaled so its face is ``face_width`` px, centred at (cx, cy), and the true box."""
    img, (x, y, w, h) = photo
    s = face_width / w
    small = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    frame = np.full((480, 640, 3), 90, np.uint8)
    ox, oy = int(cx - (x + w / 2) * s), int(cy - (y + h / 2) * s)
    x0, y0, x1, y1 = max(0, ox), max(0, oy), min(640, ox + small.shape[1]), min(480, oy + small.shape[0])
    frame[y0:y1, x0:x1] = small[y0 - oy : y1 - oy, x0 - ox : x1 - ox]
    return frame, (cx - face_width // 2, cy - face_width // 2, face_width, face_width)


def found_share(detector, photo, face_width: int, frames: int = 24) -> float:
    hits = 0
    for i in range(frames):
        frame, truth = frame_with_face(photo, face_width, 320 + int(60 * np.sin(i / 4)))
        hits += any(iou(b, truth) >= 0.3 for b in detector(frame))
    return hits / frames


@pytest.mark.parametrize("face_width", [60, 240])
def test_small_and_large_faces_are_found_in_every_frame(photo, face_width):
    assert found_share(VideoFaceDetector(), photo, face_width) >= 0.95


def test_a_60px_face_is_what_the_old_downscaled_search_missed(photo):
    """The reason for the video detector: a whole-frame search on a 320-px copy (the old cam default) misses it."""
    assert found_share(FaceDetector(detect_width=320, min_face=48, scale_factor=1.2), photo, 60, frames=6) < 0.5


def test_whole_frame_searches_run_every_scan_every_frames_and_faces_are_followed_in_between(photo):
    scans = []
    scanner = FaceDetector(scale_factor=1.2, detect_width=0, min_face=48)
    detector = VideoFaceDetector(scanner=scanner, scan_every=8)
    detector.scanner = lambda gray: scans.append(1) or scanner(gray)  # count the expensive calls
    detector.scanner.cascade = scanner.cascade
    for i in range(16):
        frame, truth = frame_with_face(photo, 100, 200 + 10 * i)  # moves 160 px between the two scans
        boxes = detector(frame)
        assert len(boxes) == 1 and iou(boxes[0], truth) >= 0.5, i
    assert len(scans) == 2


def test_a_face_that_leaves_is_dropped_after_max_missed_frames(photo):
    detector = VideoFaceDetector(scan_every=100, max_missed=3)
    frame, _ = frame_with_face(photo, 100, 320)
    assert len(detector(frame)) == 1
    empty = np.full((480, 640, 3), 90, np.uint8)
    counts = [len(detector(empty)) for _ in range(5)]
    assert counts == [1, 1, 1, 0, 0]  # carried for 3 frames, then gone
    detector.reset()
    assert len(detector(frame)) == 1 and detector.frame_index == 1


@pytest.mark.parametrize(
    "args", [["--scan-every", "0"], ["--track-every", "0"], ["--scale-factor", "1.0"], ["--min-face", "0"]]
)
def test_cam_refuses_bad_detector_settings(args, capsys):
    with pytest.raises(SystemExit) as exc:
        cam_main(["--headless", *args])
    assert exc.value.code == 2 and "must be" in capsys.readouterr().err


def test_a_face_the_whole_frame_search_misses_is_aged_and_dropped_even_when_scanning_every_frame(photo):
    detector = VideoFaceDetector(scan_every=1, max_missed=2)
    frame, _ = frame_with_face(photo, 100, 320)
    assert len(detector(frame)) == 1
    empty = np.full((480, 640, 3), 90, np.uint8)
    assert [len(detector(empty)) for _ in range(4)] == [1, 1, 0, 0]


# ----------------------------------------------------------------------------- YuNet and aligned crops
def test_yunet_finds_the_real_face_with_landmarks_where_a_face_has_them(photo):
    from emotion.serve.faces import YuNetDetector

    img, haar_box = photo
    boxes, marks = YuNetDetector().detect(img)
    assert len(boxes) == 1 and iou(boxes[0], haar_box) > 0.4
    x, y, w, h = boxes[0]
    eyes, nose, mouth = marks[0][:2], marks[0][2], marks[0][3:]
    assert ((marks[0] >= (x, y)) & (marks[0] <= (x + w, y + h))).all()
    assert eyes[0][0] < eyes[1][0] and eyes[:, 1].max() < nose[1] < mouth[:, 1].min()  # left to right, top down
    empty = YuNetDetector().detect(np.full((480, 640, 3), 90, np.uint8))
    assert empty[0].shape == (0, 4) and empty[1].shape == (0, 5, 2)


def test_a_face_tilted_35_degrees_is_found_on_the_turned_copies_and_its_landmarks_map_back(photo):
    from emotion.serve.faces import YuNetDetector

    img, _ = photo
    upright = YuNetDetector().detect(img)[1][0]
    h, w = img.shape[:2]
    turn = cv2.getRotationMatrix2D((w / 2, h / 2), 35, 1.0)
    tilted = cv2.warpAffine(img, turn, (w, h), borderMode=cv2.BORDER_REPLICATE)
    boxes, marks = YuNetDetector(rotations=(0.0, -30.0, 30.0)).detect(tilted)
    assert len(boxes) >= 1
    expected = cv2.transform(upright[None], turn)[0]  # where the upright landmarks went
    assert np.abs(marks[0] - expected).max() < 0.08 * boxes[0][2]


def test_an_aligned_crop_undoes_rotation_scale_and_shift_to_fers_framing():
    """A 48x48 face put into a frame by a known similarity (x4, turned 30°), with its landmarks carried along:
    the aligned crop gives the face back; the square around its box does not."""
    from emotion.data.synthetic import draw_face
    from emotion.serve.faces import FER_LANDMARKS, aligned_crop, crop_faces

    face = draw_face("happy", np.random.default_rng(0))
    matrix = cv2.getRotationMatrix2D((24.0, 24.0), 30, 4.0)
    matrix[:, 2] += (320 - 24, 240 - 24)
    big = cv2.resize(face, (192, 192), interpolation=cv2.INTER_CUBIC)
    m = matrix.copy()
    m[:, :2] /= 4
    frame = cv2.warpAffine(big, m, (640, 480), borderValue=128)
    marks = cv2.transform(FER_LANDMARKS[None], matrix)[0]
    aligned = aligned_crop(frame, marks)
    inner = (slice(8, 40), slice(8, 40))
    err = np.abs(aligned.astype(int) - face.astype(int))[inner].mean()
    box = np.array([[320 - 96, 240 - 96, 192, 192]])
    unaligned = np.abs(crop_faces(frame, box, margin=0.0)[0].astype(int) - face.astype(int))[inner].mean()
    assert err < 8 and unaligned > 3 * err
