"""The video face detector: small faces found, known faces followed between whole-frame searches, lost ones dropped."""

from dataclasses import replace

import cv2
import numpy as np
import pytest

from emotion.serve.cam import main as cam_main
from emotion.serve.faces import (
    CLOSER_TURNS,
    FER_LANDMARKS,
    FaceDetector,
    VideoFaceDetector,
    YuNetDetector,
    haar_scanner,
    iou,
    photo_detector,
    stream_scanner,
)
from tests.conftest import group_photo


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


SCANNERS = {"yunet": stream_scanner, "haar": haar_scanner}


@pytest.mark.parametrize("kind", SCANNERS)
@pytest.mark.parametrize("face_width", [60, 240])
def test_small_and_large_faces_are_found_in_every_frame(photo, face_width, kind):
    assert found_share(VideoFaceDetector(SCANNERS[kind]()), photo, face_width) >= 0.95


def test_the_video_detector_searches_with_yunet_and_gives_landmarks_that_follow_the_face(photo):
    detector = VideoFaceDetector()
    assert isinstance(detector.scanner, YuNetDetector)
    for i in range(10):
        frame, truth = frame_with_face(photo, 120, 200 + 12 * i)
        boxes, marks = detector.detect(frame)
        assert len(boxes) == 1 and marks.shape == (1, 5, 2) and iou(boxes[0], truth) >= 0.4, i
        x, y, w, h = boxes[0]
        assert ((marks[0] >= (x, y)) & (marks[0] <= (x + w, y + h))).all(), i  # fresh landmarks every frame
    assert VideoFaceDetector(haar_scanner()).detect(frame)[1] is None


def test_a_60px_face_is_what_the_old_downscaled_search_missed(photo):
    """The reason for the video detector: a whole-frame search on a 320-px copy (the old cam default) misses it."""
    assert found_share(FaceDetector(detect_width=320, min_face=48, scale_factor=1.2), photo, 60, frames=6) < 0.5


@pytest.mark.parametrize("kind", SCANNERS)
def test_whole_frame_searches_run_every_scan_every_frames_and_faces_are_followed_in_between(photo, kind):
    scanner = SCANNERS[kind]()
    scans = []
    search = "rows" if kind == "yunet" else "detect"  # the whole-frame search: YuNet's with its scores
    call = getattr(scanner, search)
    setattr(scanner, search, lambda frame, *a: scans.append(a) or call(frame, *a))  # count the expensive calls
    detector = VideoFaceDetector(scanner=scanner, scan_every=8)
    for i in range(16):
        frame, truth = frame_with_face(photo, 100, 200 + 10 * i)  # moves 160 px between the two scans
        boxes = detector(frame)
        assert len(boxes) == 1 and iou(boxes[0], truth) >= 0.5, i
    assert len(scans) == 2


def test_yunets_turned_searches_take_turns_one_angle_per_scan(photo):
    scanner = photo_detector()
    angles = []
    rows = scanner.rows
    scanner.rows = lambda frame, rotations=None: angles.append(rotations) or rows(frame, rotations)
    detector = VideoFaceDetector(scanner=scanner, scan_every=2)
    frame, _ = frame_with_face(photo, 100, 320)
    for _ in range(8):
        detector(frame)
    assert angles == [(0.0,), (-30.0,), (30.0,), (0.0,)]
    detector.reset()
    detector(frame)
    assert angles[-1] == (0.0,)  # a new stream starts upright


def tilted(photo, face_width: int, angle: float, cx: int = 320) -> tuple[np.ndarray, tuple[int, ...]]:
    frame, truth = frame_with_face(photo, face_width, cx)
    turn = cv2.getRotationMatrix2D((cx, 240), angle, 1.0)
    return cv2.warpAffine(frame, turn, (640, 480), borderValue=(90, 90, 90)), truth


def test_a_tilting_face_is_followed_on_turned_windows_whose_landmarks_keep_its_tilt(photo):
    """Found upright, the face turns to 45° and stays there, with a whole-frame (upright) search every 4 frames.
    Each window is turned by the face's last eye angle, so the landmarks (which the aligned crop levels) come close
    to the true tilt; on unturned windows YuNet's landmarks stay near upright."""
    turning = VideoFaceDetector(scan_every=4)
    unturned = VideoFaceDetector(scan_every=4)
    refind = unturned.scanner.refind
    unturned.scanner.refind = lambda frame, box, landmarks, search: refind(frame, box, None, search)

    def tilt(marks: np.ndarray) -> float:
        (lx, ly), (rx, ry) = marks[:2]
        return float(-np.degrees(np.arctan2(ry - ly, rx - lx)))  # the face turned counter-clockwise

    for angle in [*np.linspace(0, 45, 16), *[45.0] * 12]:
        frame, truth = tilted(photo, 120, angle)
        (boxes, marks), (_, plain) = turning.detect(frame), unturned.detect(frame)
        assert len(boxes) == 1 and iou(boxes[0], truth) >= 0.4, angle
    assert abs(tilt(marks[0]) - 45) < 10 and abs(tilt(plain[0]) - 45) > 25


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
    "args",
    [
        ["--scan-every", "0"],
        ["--track-every", "0"],
        ["--detector", "haar", "--scale-factor", "1.0"],
        ["--min-face", "0"],
        ["--detect-width", "-1"],
    ],
)
def test_cam_refuses_bad_detector_settings(args, capsys):
    with pytest.raises(SystemExit) as exc:
        cam_main(["--headless", *args])
    assert exc.value.code == 2 and "must be" in capsys.readouterr().err


def test_cam_refuses_a_haar_setting_for_yunet(capsys):
    with pytest.raises(SystemExit) as exc:
        cam_main(["--headless", "--scale-factor", "1.3"])
    assert exc.value.code == 2 and "--detector haar" in capsys.readouterr().err


def test_the_cams_flags_reach_its_detector():
    from emotion.serve.cam import video_scanner

    scanner = video_scanner("yunet", None, None, None)
    assert scanner == stream_scanner() and scanner.recheck == 0  # no closer looks in a scan: the frame budget
    assert (scanner.detect_width, scanner.rotations) == (photo_detector().detect_width, photo_detector().rotations)
    moved = video_scanner("yunet", 320, 60, None)
    assert isinstance(moved, YuNetDetector) and (moved.detect_width, moved.min_face) == (320, 60)
    haar = video_scanner("haar", 0, 30, 1.3)
    assert isinstance(haar, FaceDetector) and (haar.detect_width, haar.min_face, haar.scale_factor) == (0, 30, 1.3)


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


def test_the_aligned_crops_fit_weighs_every_landmark():
    """Landmarks placed by a known similarity come back exactly; with a mouth corner 5 px off (a smile) the fit is
    the least-squares one over all five points, as OpenCV's fit with every point an inlier gives it — not the exact
    similarity of the other four, which a RANSAC fit would return."""
    from emotion.serve.faces import FER_LANDMARKS, alignment

    place = cv2.getRotationMatrix2D((24.0, 24.0), 25, 3.0)
    place[:, 2] += (200, 150)
    marks = cv2.transform(FER_LANDMARKS[None], place)[0]
    back = cv2.invertAffineTransform(place)
    np.testing.assert_allclose(alignment(marks), back, atol=1e-4)
    smiling = marks.copy()
    smiling[4] += cv2.transform(np.float32([[[5.0, 0.0]]]), np.hstack([place[:, :2], [[0], [0]]]))[0, 0]
    all_points = cv2.estimateAffinePartial2D(smiling, FER_LANDMARKS, ransacReprojThreshold=1e9)[0]
    np.testing.assert_allclose(alignment(smiling), all_points, atol=1e-4)
    assert np.abs(alignment(smiling) - back).max() > 1e-2
    assert alignment(np.full((5, 2), 7.0)) is None  # degenerate: the crop falls back to the landmarks' square


def test_the_classifiers_crop_is_cut_closer_than_the_template_by_crop_zoom():
    """The zoom scales the template about the crop's centre (a face 10% larger at 1.1), and ``Predictor.predict``
    classifies the crop at ``CROP_ZOOM``: its probabilities are those of that crop, not of the template's."""
    from emotion.data.synthetic import draw_face
    from emotion.serve.faces import CROP_ZOOM, FER_LANDMARKS, aligned_crop, alignment
    from emotion.serve.predictor import Predictor

    place = cv2.getRotationMatrix2D((24.0, 24.0), -20, 4.0)
    place[:, 2] += (320 - 24, 240 - 24)
    marks = cv2.transform(FER_LANDMARKS[None], place)[0]
    closer = np.vstack([cv2.getRotationMatrix2D((24.0, 24.0), 0, 1.1), [0, 0, 1]]) @ np.vstack(
        [alignment(marks), [0, 0, 1]]
    )
    np.testing.assert_allclose(alignment(marks, zoom=1.1), closer[:2], atol=1e-4)

    face = cv2.resize(draw_face("surprise", np.random.default_rng(3)), (192, 192), interpolation=cv2.INTER_CUBIC)
    m = place.copy()
    m[:, :2] /= 4
    frame = cv2.warpAffine(face, m, (640, 480), borderValue=90)
    predictor = Predictor.from_pretrained("default", detector=None)
    assert predictor.zoom == CROP_ZOOM != 1.0
    got = predictor.predict(frame, np.array([[224, 144, 192, 192]]), landmarks=marks[None])[0].probs
    np.testing.assert_allclose(got, predictor.classify(aligned_crop(frame, marks, 48, CROP_ZOOM)[None])[0], atol=1e-6)
    assert np.abs(got - predictor.classify(aligned_crop(frame, marks)[None])[0]).max() > 1e-3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--headless", "--output", "out.xyz"], "give OUT.mp4 or OUT.avi"),
        (["--output", "out.mp4"], "add --headless"),
    ],
)
def test_cam_refuses_an_output_it_would_not_write_as_named(args, message, capsys):
    with pytest.raises(SystemExit) as exc:
        cam_main(args)
    assert exc.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("corner", [(62, 62), (578, 62), (62, 418), (578, 418)])
def test_a_tilted_face_in_a_corner_stays_on_the_turned_copies(photo, corner):
    """The turned searches use a canvas that holds the whole turned frame: a corner is not cut off."""
    img, (x, y, w, h) = photo
    s = 90 / w
    turn = cv2.getRotationMatrix2D((x + w / 2, y + h / 2), 35, s)  # the face 90 px wide, tilted 35°, into the corner
    turn[:, 2] += np.array(corner) - (x + w / 2, y + h / 2)
    frame = cv2.warpAffine(img, turn, (640, 480), borderMode=cv2.BORDER_CONSTANT, borderValue=(90, 90, 90))
    upright = YuNetDetector().detect(img)[1][0]
    _, marks = photo_detector().detect(frame)
    expected = cv2.transform(upright[None], turn)[0]
    assert len(marks) and min(np.abs(m - expected).max() for m in marks) < 0.1 * 90


def _row(x: float, y: float, side: float, score: float) -> np.ndarray:
    """A YuNet row: box, five landmarks (at the box centre: unused here) and score."""
    return np.array([x, y, side, side, *([x + side / 2, y + side / 2] * 5), score], np.float32)


class _Scripted:
    """Stands in for YuNet's answers: the whole-frame search gives those of ``frame_rows`` that reach its net's
    score threshold, each closer look ``closer(box)``; records which boxes were looked at again."""

    def __init__(self, detector: YuNetDetector, frame_rows: list, closer) -> None:
        self.looked: list[tuple[float, ...]] = []
        self.angles: list[float] = []
        rows = np.array(frame_rows, np.float32).reshape(-1, 15)
        detector._rows = lambda net, image, turn: rows[rows[:, 14] >= net.getScoreThreshold() - 1e-6]

        def window_rows(frame, box, angle, face_px, search):
            self.looked.append(tuple(float(v) for v in box))
            self.angles.append(angle)
            return np.array(closer(box), np.float32).reshape(-1, 15)

        detector._window_rows = window_rows


def test_a_weak_detection_is_kept_only_when_a_closer_look_is_confident():
    weak, strong = _row(100, 100, 60, 0.3), _row(400, 200, 80, 0.9)
    plain = YuNetDetector(score_threshold=0.45, recheck=0)
    _Scripted(plain, [weak, strong], lambda box: [])
    assert plain.rows(np.zeros((480, 640, 3), np.uint8))[:, 14].tolist() == pytest.approx([0.9])

    confident = YuNetDetector(score_threshold=0.45, recheck=3, recheck_score=0.6)
    looks = _Scripted(confident, [weak, strong], lambda box: [_row(box[0] + 2, box[1] + 1, 58, 0.8)])
    rows = confident.rows(np.zeros((480, 640, 3), np.uint8))
    assert looks.looked == [(100, 100, 60, 60)]  # the strong detection is not looked at again
    assert sorted(rows[:, 14].tolist()) == pytest.approx([0.8, 0.9]) and [102, 101] in rows[:, :2].tolist()

    unsure = YuNetDetector(score_threshold=0.45, recheck=3, recheck_score=0.6)
    _Scripted(unsure, [weak, strong], lambda box: [_row(box[0], box[1], 60, 0.55)])
    assert unsure.rows(np.zeros((480, 640, 3), np.uint8))[:, 14].tolist() == pytest.approx([0.9])


def test_closer_looks_go_to_the_best_weak_detections_large_enough_to_enlarge():
    rows = [_row(10, 10, 50, 0.2), _row(200, 10, 50, 0.4), _row(400, 10, 50, 0.3), _row(10, 300, 20, 0.44)]
    rows += [_row(300, 250, 100, 0.9), _row(320, 270, 40, 0.44)]  # a face found, and a weak part of it
    detector = YuNetDetector(score_threshold=0.45, recheck=2, recheck_from=0.1, recheck_size=160)
    looks = _Scripted(detector, rows, lambda box: [])
    assert detector.rows(np.zeros((480, 640, 3), np.uint8))[:, 14].tolist() == pytest.approx([0.9])
    # 20 px would be enlarged 8x and the part lies inside a face found: neither looked at; of the others the two best
    assert looks.looked == [(200, 10, 50, 50), (400, 10, 50, 50)]


def test_a_closer_look_turns_the_window_by_its_own_angles_or_the_detectors():
    weak = _row(100, 100, 60, 0.3)
    own = YuNetDetector(score_threshold=0.45, rotations=(0.0, 30.0), recheck=1, recheck_rotations=(0.0, -45.0, 45.0))
    looks = _Scripted(own, [weak], lambda box: [])
    own.rows(np.zeros((480, 640, 3), np.uint8))
    assert looks.angles == [0.0, -45.0, 45.0]
    inherited = replace(own, recheck_rotations=None)
    looks = _Scripted(inherited, [weak], lambda box: [])
    inherited.rows(np.zeros((480, 640, 3), np.uint8))
    assert looks.angles == [0.0, 30.0]


def test_recheck_settings_must_rise_from_weak_to_confident():
    with pytest.raises(ValueError, match="must rise in that order"):
        YuNetDetector(score_threshold=0.45, recheck=3, recheck_from=0.5)
    with pytest.raises(ValueError, match="must rise in that order"):
        YuNetDetector(score_threshold=0.45, recheck=3, recheck_score=0.4)
    YuNetDetector(score_threshold=0.45, recheck=0, recheck_from=0.5)  # unused without closer looks


def _face_row(x: float, y: float, side: float, score: float) -> np.ndarray:
    """A YuNet row whose landmarks sit where FER2013's framing puts them in the box (its aligned crop is the box)."""
    marks = FER_LANDMARKS / 48 * side + (x, y)
    return np.array([x, y, side, side, *marks.reshape(-1), score], np.float32)


class _GreyCheck:
    """Stands in for the face check: P(face) by the crop's grey level, so each painted box gets its own answer."""

    size = 48

    def __init__(self, p_by_grey: dict[int, float]) -> None:
        self.p_by_grey = p_by_grey

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        return np.array([self.p_by_grey.get(int(round(c.mean())), 0.0) for c in crops], np.float32)


def _painted(rows: list[np.ndarray], greys: list[int]) -> np.ndarray:
    frame = np.zeros((480, 640, 3), np.uint8)
    for row, grey in zip(rows, greys):
        x, y, side = (int(v) for v in row[:3])
        frame[max(0, y - side // 4) : y + side + side // 4, max(0, x - side // 4) : x + side + side // 4] = grey
    return frame


def test_a_face_under_every_score_level_is_let_in_only_when_the_face_check_is_sure_of_it():
    check = _GreyCheck({200: 0.995, 100: 0.9})  # 0.9 passes the plain check (0.5), not the sure one (0.99)
    sure = dict(sure_check=0.99, sure_score=0.3, sure_look=0.75)
    base = dict(score_threshold=0.75, recheck=3, recheck_score=0.8, check=0.5)

    # whole-frame detections under the threshold, no closer look finding anything
    rows = [_face_row(60, 60, 80, 0.5), _face_row(300, 60, 80, 0.5), _face_row(60, 300, 80, 0.2)]
    frame = _painted(rows, [200, 100, 200])
    for settings, kept in ((base, []), ({**base, **sure}, [(60, 60)])):
        detector = YuNetDetector(**settings)
        detector._face_check = check
        _Scripted(detector, rows, lambda box: [])
        # the sure one scoring 0.5 is kept; the one the check is only 0.9 sure of is not, nor the one under 0.3
        assert [tuple(r[:2]) for r in detector.rows(frame)] == kept

    # a closer look scoring between sure_look and recheck_score
    weak = [_face_row(60, 60, 80, 0.2), _face_row(300, 60, 80, 0.2), _face_row(60, 300, 80, 0.2)]
    frame = _painted(weak, [200, 100, 200])
    looks = {60.0 * 1000 + 60: 0.77, 300.0 * 1000 + 60: 0.77, 60.0 * 1000 + 300: 0.7}
    for settings, kept in ((base, []), ({**base, **sure}, [(61, 61)])):
        detector = YuNetDetector(**settings)
        detector._face_check = check
        _Scripted(detector, weak, lambda box: [_face_row(box[0] + 1, box[1] + 1, 80, looks[box[0] * 1000 + box[1]])])
        # 0.77 with P 0.995 is kept, 0.77 with P 0.9 is not, 0.7 (under sure_look) is not even with P 0.995
        assert [tuple(r[:2]) for r in detector.rows(frame)] == kept


@pytest.mark.parametrize(
    "settings",
    [
        dict(check=0.5, sure_check=0.99, sure_score=0.8, sure_look=0.75),  # not under the threshold
        dict(check=0.5, sure_check=0.99, sure_score=0.05, sure_look=0.75),  # under what closer looks start from
        dict(check=0.5, sure_check=0.99, sure_score=0.3, sure_look=0.85),  # not under recheck_score
        dict(check=0.5, sure_check=1.0, sure_score=0.3, sure_look=0.75),  # no crop can be that sure
    ],
)
def test_sure_settings_must_lie_under_the_levels_they_relax(settings):
    with pytest.raises(ValueError, match="sure_"):
        YuNetDetector(score_threshold=0.75, recheck=3, recheck_score=0.8, **settings)


def test_without_the_face_check_nothing_is_let_in_and_a_stricter_check_raises_the_sure_level():
    rows = [_face_row(60, 60, 80, 0.5)]
    frame = _painted(rows, [200])  # the stand-in check gives it 0.995
    for check, kept in ((0.0, 0), (0.5, 1), (0.998, 0)):  # 0.998: stricter than sure_check 0.99 for every face
        detector = YuNetDetector(
            score_threshold=0.75, recheck_score=0.8, check=check, sure_check=0.99, sure_score=0.3, sure_look=0.75
        )
        if check:
            detector._face_check = _GreyCheck({200: 0.995})
        _Scripted(detector, rows, lambda box: [])
        assert len(detector.rows(frame)) == kept
    assert photo_detector().sure_check > photo_detector().check > 0  # the shipped detector lets sure faces in


@pytest.mark.parametrize("name", ["hubble_deep_field", "chelsea"])
def test_the_photo_detector_keeps_no_face_on_textures_the_looser_threshold_took_for_one(name):
    """A star field and a cat (scikit-image's photographs, no person in them) scored 0.5-0.8 by YuNet: the photo
    detector keeps a detection under its threshold only when a closer look is confident (faces_in_the_field)."""
    skimage_data = pytest.importorskip("skimage.data")
    frame = cv2.resize(cv2.cvtColor(getattr(skimage_data, name)(), cv2.COLOR_RGB2BGR), (640, 480))
    loose = replace(
        photo_detector(), score_threshold=0.45, recheck_score=0.7, recheck_size=160, recheck_rotations=None, check=0.0
    )
    assert len(loose(frame)) >= 1  # what this guards against: the detector shipped until 2026-12-04 saw a face here
    assert len(replace(photo_detector(), check=0.0)(frame)) == 0  # the closer looks alone (no face check)
    assert len(photo_detector()(frame)) == 0


# ----------------------------------------------------------------------------- the cam's new faces
BLANK = np.zeros((480, 640, 3), np.uint8)


def unchecked() -> YuNetDetector:
    """The cam's scanner without the face check (scripted rows have no face to check: tests/test_face_check.py)."""
    return replace(stream_scanner(), check=0.0)


def test_a_new_face_the_cams_scan_sees_weakly_is_followed_only_once_a_closer_look_confirms_it():
    weak = _row(200, 150, 80, 0.5)  # above the scan's threshold, below confirm_below
    confirmed = unchecked()
    _Scripted(confirmed, [weak], lambda box: [_row(box[0] + 3, box[1] + 2, 78, 0.85)])
    assert VideoFaceDetector(confirmed).detect(BLANK)[0].tolist() == [[203, 152, 78, 78]]  # as the closer look saw it

    doubted = unchecked()
    looks = _Scripted(doubted, [weak], lambda box: [_row(box[0], box[1], 80, 0.6)])
    assert len(VideoFaceDetector(doubted)(BLANK)) == 0
    assert looks.angles == list(CLOSER_TURNS)  # one closer look, the photo detector's turns

    for scanner, settings in ((unchecked(), {}), (unchecked(), {"confirm_below": 0.0})):
        row = _row(200, 150, 80, 0.9 if not settings else 0.5)
        looks = _Scripted(scanner, [row], lambda box: [])
        assert len(VideoFaceDetector(scanner, **settings)(BLANK)) == 1 and looks.looked == []  # no look needed


def test_a_place_a_closer_look_found_no_face_at_is_looked_at_again_only_after_doubt_scans_scans():
    scanner = unchecked()
    looks = _Scripted(scanner, [_row(200, 150, 80, 0.5)], lambda box: [])
    detector = VideoFaceDetector(scanner, scan_every=1, doubt_scans=3)
    assert [len(detector(BLANK)) for _ in range(7)] == [0] * 7
    assert len(looks.angles) == 3 * len(CLOSER_TURNS)  # at scans 1, 4 and 7
    detector.reset()
    detector(BLANK)
    assert len(looks.angles) == 4 * len(CLOSER_TURNS)  # a new stream doubts nothing yet


@pytest.mark.parametrize("name", ["hubble_deep_field", "chelsea"])
def test_the_cam_follows_no_face_on_textures_its_scans_take_for_one(name):
    """The cam's scans keep YuNet's weaker faces (0.45: a closer look in every scan would not fit its frames'
    budget); a star field and a cat gave a false face in 82% and 22% of the frames of a 90-frame video until the
    cam confirmed new faces by a closer look (experiments/throughput/, textures)."""
    skimage_data = pytest.importorskip("skimage.data")
    frame = cv2.resize(cv2.cvtColor(getattr(skimage_data, name)(), cv2.COLOR_RGB2BGR), (640, 480))
    rng = np.random.default_rng(0)
    frames = []
    for _ in range(12):  # the camera's noise, then JPEG as a webcam's MJPG stream sends it
        noisy = np.clip(frame + rng.normal(0, 3, frame.shape), 0, 255).astype(np.uint8)
        frames.append(cv2.imdecode(cv2.imencode(".jpg", noisy, [cv2.IMWRITE_JPEG_QUALITY, 75])[1], cv2.IMREAD_COLOR))

    def frames_with_a_face(detector: VideoFaceDetector) -> int:
        return sum(len(detector(f)) > 0 for f in frames)

    assert frames_with_a_face(VideoFaceDetector(unchecked(), scan_every=1, confirm_below=0.0)) >= 3  # guarded against
    assert frames_with_a_face(VideoFaceDetector(unchecked(), scan_every=1)) == 0  # the closer look alone
    assert frames_with_a_face(VideoFaceDetector(scan_every=1)) == 0


def test_the_cams_confirm_below_reaches_its_detector_and_is_checked(capsys, monkeypatch):
    import emotion.serve.cam as cam
    from emotion.errors import EXIT_USAGE

    made = []
    monkeypatch.setattr(cam, "VideoFaceDetector", lambda *a, **k: made.append(k) or VideoFaceDetector(*a, **k))
    monkeypatch.setattr(cam, "run", lambda *a, **k: (_ for _ in ()).throw(cam.SourceError("stop here")))
    assert cam_main(["--headless", "--confirm-below", "0.9"]) == EXIT_USAGE and made[-1]["confirm_below"] == 0.9
    assert cam_main(["--headless"]) == EXIT_USAGE and "confirm_below" not in made[-1]  # the detector's own default
    bad = ((["--confirm-below", "1.5"], "from 0 to 1"), (["--detector", "haar", "--confirm-below", "0.5"], "haar"))
    for args, says in bad:
        with pytest.raises(SystemExit) as exc:
            cam_main(["--headless", *args])
        assert exc.value.code == 2 and says in capsys.readouterr().err


def test_a_frame_smaller_than_yunets_smallest_face_is_not_searched():
    """A 1-pixel image was, now and then, given a face (YuNet's answers on inputs under its smallest anchor vary)."""
    detector = YuNetDetector()
    asked = []
    detector._rows = lambda net, image, turn: asked.append(image.shape) or np.array([_row(0, 0, 9, 0.9)])
    for shape in ((1, 1, 3), (9, 300, 3), (300, 9, 3), (3, 1200, 3)):  # the last is 640 px wide searched: 1 px high
        assert len(detector.rows(np.full(shape, 200, np.uint8))) == 0 and asked == [], shape
    assert len(detector.rows(np.full((10, 10, 3), 200, np.uint8))) == 1 and asked == [(10, 10, 3)]


def group_photo_of(photo, face_width: int) -> tuple[np.ndarray, list[tuple]]:
    """:func:`tests.conftest.group_photo` of the astronaut with faces ``face_width`` px, and their true boxes."""
    img, (x, y, w, _) = photo
    s = face_width / w
    frame, corners = group_photo(img, s)
    return frame, [(int(ox + x * s), int(oy + y * s), face_width, face_width) for ox, oy in corners]


def test_small_faces_of_a_large_photo_are_found_by_a_finer_upright_search_down_to_min_face(photo):
    frame, truths = group_photo_of(photo, 64)  # 64 px of 3,600: 11 px in the 640-px search copy
    assert len(replace(photo_detector(), min_face=0).detect(frame)[0]) == 0  # the 640-px copy alone misses them
    for detector in (photo_detector(), replace(photo_detector(), min_face=64)):  # the default, and 64 asked for
        boxes, landmarks = detector.detect(frame)
        assert sorted(max(iou(b, t) for b in boxes) for t in truths)[0] >= 0.4 and len(boxes) == 6
        inside = [x <= lx <= x + w and y <= ly <= y + h for (x, y, w, h), f in zip(boxes, landmarks) for lx, ly in f]
        assert all(inside)
    assert stream_scanner().min_face == 0  # a video's scans keep their frame budget: no finer search unless asked


def test_the_finer_search_of_a_huge_photo_is_capped_in_pixels(monkeypatch):
    import emotion.serve.faces as faces

    scales = []

    def searched(self, frame, scale, turns):  # records each search's scale, finds nothing
        scales.append(scale)
        return faces._NO_ROWS.copy()

    monkeypatch.setattr(faces.YuNetDetector, "_rows_at", searched)
    frame = np.zeros((3000, 4000, 3), np.uint8)
    photo_detector().detect(frame)
    assert scales == [640 / 4000, 1.0]  # 12 MP: the finer search at full resolution
    scales.clear()
    monkeypatch.setattr(faces, "FINE_MAX_PIXELS", 3_000_000)
    photo_detector().detect(frame)
    assert scales[0] == 640 / 4000 and abs(scales[1] * scales[1] * 12e6 - 3e6) < 1e3  # a quarter of the pixels


def test_the_finer_search_adds_a_face_the_first_search_judged_only_if_it_is_confident(monkeypatch):
    """A weak face the 640-px copy shows ``FINE_JUDGED_PX`` wide or more was judged there (turns, closer looks, the
    face check): the finer search may not add it; its confident faces and its small weak faces it does add."""
    import emotion.serve.faces as faces

    def row(x: float, side: float, score: float) -> np.ndarray:
        r = np.zeros(15, np.float32)
        r[:4], r[14] = (x, 100, side, side), score
        r[4:14] = np.tile([x + side / 2, 100 + side / 2], 5)
        return r

    coarse = 640 / 4000
    judged_side = faces.FINE_JUDGED_PX / coarse  # pixels of the photo
    finer = np.stack(
        [
            row(0, judged_side * 1.2, 0.6),  # large and weak: the first search judged it (no face there)
            row(1000, judged_side * 1.2, 0.9),  # large and confident
            row(2000, judged_side * 0.5, 0.6),  # too small for the first search to judge: the finer one's to keep
        ]
    )

    def searched(self, frame, scale, turns):
        return finer.copy() if scale > coarse else faces._NO_ROWS.copy()

    monkeypatch.setattr(faces.YuNetDetector, "_rows_at", searched)
    frame = np.zeros((3000, 4000, 3), np.uint8)
    kept = photo_detector().rows(frame)
    assert sorted(kept[:, 0].tolist()) == [1000, 2000]
    monkeypatch.setattr(faces, "FINE_JUDGED_PX", None)  # no such rule: every face the finer search keeps
    assert sorted(photo_detector().rows(frame)[:, 0].tolist()) == [0, 1000, 2000]
