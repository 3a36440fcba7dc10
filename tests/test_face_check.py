"""The face/non-face check: faces pass, textures YuNet takes for faces do not, and the detectors use it."""

from dataclasses import replace

import cv2
import numpy as np
import pytest

from emotion.errors import ModelFileError
from emotion.models.onnx_session import open_onnx
from emotion.serve.face_check import FACE_CHECK, FaceCheck
from emotion.serve.faces import FER_LANDMARKS, YuNetDetector, aligned_crop, photo_detector

skimage_data = pytest.importorskip("skimage.data")


def picture(name: str, size: tuple[int, int] = (640, 480)) -> np.ndarray:
    img = np.asarray(getattr(skimage_data, name)())
    img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR) if img.ndim == 2 else cv2.cvtColor(img[..., :3], cv2.COLOR_RGB2BGR)
    return cv2.resize(img, size)


def template_landmarks(cx: float, cy: float, side: float, angle: float = 0.0) -> np.ndarray:
    """FER2013's landmark template placed as a face ``side`` px wide centred at (cx, cy), turned by ``angle``."""
    m = cv2.getRotationMatrix2D((24.0, 24.0), angle, side / 48.0)
    m[:, 2] += (cx - 24.0, cy - 24.0)
    return cv2.transform(FER_LANDMARKS.reshape(-1, 1, 2), m).reshape(5, 2)


def texture_crops(name: str, n: int, seed: int = 0) -> np.ndarray:
    """Aligned crops of ``n`` places of a picture framed as a face would be (random place, size and tilt)."""
    frame, rng = picture(name), np.random.default_rng(seed)
    marks = [
        template_landmarks(rng.uniform(120, 520), rng.uniform(120, 360), rng.uniform(40, 200), rng.uniform(-30, 30))
        for _ in range(n)
    ]
    return np.stack([aligned_crop(frame, m) for m in marks])


@pytest.fixture(scope="module")
def check() -> FaceCheck:
    return FaceCheck()


@pytest.fixture(scope="module")
def real_faces() -> np.ndarray:
    """The aligned crops of the two people among scikit-image's pictures (the check never trained on them), each at
    several sizes in a 640x480 frame, as the photo detector finds them."""
    crops = []
    detector = replace(photo_detector(), check=0.0)
    for name in ("astronaut", "camera"):
        img = np.asarray(getattr(skimage_data, name)())
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR) if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
        for side in (480, 700, 1000):
            frame = np.full((480, 640, 3), 100, np.uint8)
            big = cv2.resize(img, (side, side), interpolation=cv2.INTER_AREA)
            x0 = (side - 640) // 2 if side > 640 else 0
            part = big[:480, max(0, x0) : max(0, x0) + 640]
            frame[: part.shape[0], : part.shape[1]] = part
            boxes, marks = detector.detect(frame)
            assert len(boxes) >= 1, f"{name} at {side} px: the detector lost the face the check is tested on"
            crops.append(aligned_crop(frame, marks[0]))
    return np.stack(crops)


def test_the_check_passes_real_faces_and_turns_away_textures_it_never_saw(check, real_faces):
    threshold = photo_detector().check
    assert threshold > 0, "the photo detector ships with the face check"
    assert (check(real_faces) >= threshold).all()
    for name in ("text", "page", "hubble_deep_field", "chelsea", "brick"):  # the benchmark's photographs
        kept = check(texture_crops(name, 60)) >= threshold
        assert kept.mean() <= 0.1, f"{name}: {kept.sum()} of 60 texture crops taken for faces"


def test_the_check_refuses_crops_of_the_wrong_size(check):
    with pytest.raises(ValueError, match="48×48"):
        check(np.zeros((2, 64, 64), np.uint8))
    assert check(np.zeros((0, 48, 48), np.uint8)).shape == (0,)


def test_a_model_file_without_the_checks_metadata_is_refused_with_how_to_make_one(tmp_path):
    with pytest.raises(ModelFileError, match="face_check_spec"):
        open_onnx(FACE_CHECK.parent / "emotion_vgg_field.onnx", key="face_check_spec")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    with pytest.raises(ModelFileError, match="not a loadable ONNX model"):
        FaceCheck(broken)


def _rows_at(marks: list[np.ndarray], score: float) -> np.ndarray:
    rows = []
    for m in marks:
        (x0, y0), (x1, y1) = m.min(0), m.max(0)
        side = (x1 - x0) * 2.2
        rows.append([(x0 + x1 - side) / 2, (y0 + y1 - side) / 2, side, side, *m.reshape(-1), score])
    return np.array(rows, np.float32)


def test_the_detector_drops_what_the_check_turns_away_and_keeps_faces():
    """YuNet's answers scripted: a confident detection on a page of text and the astronaut's face pasted beside it;
    with the check only the face is kept, without it both (the check, not the score, decides)."""
    frame = picture("text")
    img = cv2.cvtColor(np.asarray(skimage_data.astronaut()), cv2.COLOR_RGB2BGR)
    frame[:240, 400:640] = cv2.resize(img, (480, 480))[40:280, 100:340]
    face_marks = replace(photo_detector(), check=0.0, recheck=0, score_threshold=0.9).detect(frame)[1]
    assert len(face_marks) == 1 and face_marks[0][:, 0].min() > 400
    rows = _rows_at([template_landmarks(150, 300, 120), face_marks[0]], 0.9)
    for check, kept in ((0.0, 2), (photo_detector().check, 1)):
        detector = YuNetDetector(score_threshold=0.75, check=check)
        detector._rows = lambda net, image, turn: rows.copy()
        found = detector.rows(frame)
        assert len(found) == kept
    assert found[0, 4] > 400  # the face's row, not the text's


@pytest.mark.parametrize("value", [-0.1, 1.0, 1.5])
def test_a_check_threshold_outside_0_to_1_is_refused(value):
    with pytest.raises(ValueError, match="check="):
        YuNetDetector(check=value)


def test_the_photo_detector_sees_no_face_on_the_page_of_text_yunet_scores_as_one():
    """scikit-image's ``text`` picture: YuNet scores a place on it 0.77-0.80 upright, above every threshold
    (faces_in_the_field, "Telling faces from textures"); the face check turns it away."""
    frame = picture("text")
    assert len(replace(photo_detector(), check=0.0)(frame)) >= 1  # what this guards against
    assert len(photo_detector()(frame)) == 0


def test_the_cams_face_check_flag_reaches_its_scanner_and_is_checked(capsys, monkeypatch):
    import emotion.serve.cam as cam
    from emotion.errors import EXIT_USAGE
    from emotion.serve.faces import VideoFaceDetector

    made = []
    monkeypatch.setattr(cam, "VideoFaceDetector", lambda *a, **k: made.extend(a[:1]) or VideoFaceDetector(*a, **k))
    monkeypatch.setattr(cam, "run", lambda *a, **k: (_ for _ in ()).throw(cam.SourceError("stop here")))
    assert cam.main(["--headless", "--face-check", "0.2"]) == EXIT_USAGE and made[-1].check == 0.2
    assert cam.main(["--headless"]) == EXIT_USAGE and made[-1].check == photo_detector().check > 0
    for args, says in ((["--face-check", "1"], "under 1"), (["--detector", "haar", "--face-check", "0.5"], "haar")):
        with pytest.raises(SystemExit) as exc:
            cam.main(["--headless", *args])
        assert exc.value.code == 2 and says in capsys.readouterr().err


def test_predicts_face_check_flag_reaches_its_detector_and_is_checked(capsys, monkeypatch):
    import emotion.serve.predict as predict

    made = []
    real = predict.load_predictor
    monkeypatch.setattr(
        predict, "load_predictor", lambda *a: made.append(real(*a)) or (_ for _ in ()).throw(ValueError("stop here"))
    )
    assert predict.main(["nowhere.png", "--face-check", "0"]) == 2 and made[-1].detector.check == 0
    assert predict.main(["nowhere.png"]) == 2 and made[-1].detector.check == photo_detector().check
    for args, says in ((["--face-check", "-0.5"], "under 1"), (["--detector", "haar", "--face-check", "0.5"], "haar")):
        with pytest.raises(SystemExit) as exc:
            predict.main(["nowhere.png", *args])
        assert exc.value.code == 2 and says in capsys.readouterr().err


class _Answers:
    """Stands in for the face check: gives ``answers`` in turn, one per crop."""

    size = 48

    def __init__(self, answers: list[float]) -> None:
        self.given = iter(answers)

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        return np.array([next(self.given) for _ in crops], np.float32)


def test_a_new_face_the_cam_confirms_by_a_closer_look_must_also_pass_the_face_check():
    """The cam's scanner checks its scans' faces and the closer look that confirms a weak new one: scripted YuNet
    rows and face-check answers (first the scan's face, then the closer look's)."""
    from emotion.serve.faces import VideoFaceDetector, stream_scanner

    blank = np.zeros((480, 640, 3), np.uint8)
    weak = _rows_at([template_landmarks(240, 190, 80)], 0.5)  # above the scan's 0.45, below confirm_below 0.75
    closer = _rows_at([template_landmarks(242, 191, 78)], 0.85)
    for answers, followed in (([0.9, 0.9], 1), ([0.9, 0.2], 0), ([0.2], 0)):
        scanner = stream_scanner()
        scanner._rows = lambda net, image, turn: weak.copy()
        scanner._window_rows = lambda frame, box, angle, face_px, search: closer.copy()
        scanner._face_check = _Answers(answers)
        assert len(VideoFaceDetector(scanner)(blank)) == followed, answers
