"""Export, Predictor, predict CLI, webcam demo (headless, on a generated video of a real face) and songs."""

import csv
import functools
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch

from emotion.errors import UserError
from emotion.export import export_model, model_files
from emotion.labels import FER2013_CLASSES
from emotion.models import EmotionCNN
from emotion.models.checkpoint import save_safetensors
from emotion.serve.cam import FaceTracker, SourceError, open_source, run
from emotion.serve.exporters import export
from emotion.serve.faces import FaceDetector, crop_faces
from emotion.serve.predict import main as predict_main
from emotion.serve.predictor import Face, Predictor
from tests.conftest import ROOT, group_photo, make_cfg


def export_cli(tmp_path: Path, *overrides: str) -> tuple[Path, float]:
    """``python -m emotion.export OVERRIDES…`` (composed as Hydra would)."""
    return export_model(make_cfg(tmp_path, list(overrides), config_name="export"))


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """A random network with non-default normalisation, saved as safetensors (spec in metadata)."""
    torch.manual_seed(0)
    net = EmotionCNN(mean=0.45, std=0.3).eval()
    return save_safetensors(net, tmp_path_factory.mktemp("w") / "net.safetensors")


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    skimage_data = pytest.importorskip("skimage.data")
    return cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2BGR)


@pytest.fixture(scope="module")
def face_video(tmp_path_factory, astronaut) -> Path:
    """640×480 video: the astronaut photo drifting right, then 5 frames with no face."""
    path = tmp_path_factory.mktemp("video") / "face.avi"
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (640, 480))
    for i in range(20):
        frame = np.full((480, 640, 3), 90, np.uint8)
        frame[0:480, i * 4 : i * 4 + 480] = cv2.resize(astronaut, (480, 480))
        vw.write(frame)
    for _ in range(5):
        vw.write(np.full((480, 640, 3), 90, np.uint8))
    vw.release()
    return path


def test_haar_detector_finds_the_real_face(astronaut):
    boxes = FaceDetector()(astronaut)
    assert len(boxes) == 1
    x, y, w, h = boxes[0]
    assert 150 < x + w / 2 < 300 and 60 < y + h / 2 < 180  # the astronaut's face


def test_crops_are_48x48_gray_even_at_the_border(astronaut):
    crops = crop_faces(astronaut, np.array([[0, 0, 100, 100], [480, 480, 40, 40]]))
    assert crops.shape == (2, 48, 48) and crops.dtype == np.uint8


@pytest.mark.parametrize("fmt", ["onnx", "pt2", "safetensors"])
def test_export_parity_and_metadata(weights, tmp_path, fmt):
    out, diff = export(str(weights), fmt, str(tmp_path / f"m.{fmt}"))
    assert diff < 1e-4
    if fmt == "onnx":
        meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
        assert json.loads(meta["class_names"])[6] == "neutral"
        assert json.loads(meta["emotion_spec"])["input_size"] == 48


def test_onnx_export_carries_per_face_scaling(tmp_path):
    """The per-face scaling is part of the exported graph: the ONNX file gives the PyTorch network's probabilities
    and, like it, the same ones for a brighter copy of a face."""
    torch.manual_seed(0)
    net = EmotionCNN(input_norm="per_face").eval()
    weights = tmp_path / "per_face.safetensors"
    save_safetensors(net, weights)
    out, diff = export(str(weights), "onnx", str(tmp_path / "per_face.onnx"))
    assert diff < 1e-4
    assert json.loads({p.key: p.value for p in onnx.load(str(out)).metadata_props}["emotion_spec"])["input_norm"] == (
        "per_face"
    )
    crops = np.random.default_rng(0).integers(40, 200, (4, 48, 48), dtype=np.uint8)
    brighter = np.clip(crops.astype(np.float32) * 1.25, 0, 255).astype(np.uint8)
    pred = Predictor(str(out))
    assert np.allclose(pred.classify(crops), pred.classify(brighter), atol=2e-3)
    assert np.allclose(pred.classify(crops), Predictor(str(weights)).classify(crops), atol=1e-4)


def test_export_cli_errors_are_clear(tmp_path, weights):
    with pytest.raises(UserError, match="missing.ckpt' is neither a model file nor a shipped model"):
        export_cli(tmp_path, f"ckpt_path={tmp_path}/missing.ckpt")
    with pytest.raises(UserError, match="give one model"):
        export_cli(tmp_path, "format=onnx")
    with pytest.raises(UserError, match="give one model"):  # one model, not two
        export_cli(tmp_path, f"ckpt_path={tmp_path}/a.ckpt", "pretrained=true")
    with pytest.raises(UserError, match=r"'nonexistent' is neither a model file nor a shipped model \(default"):
        export_cli(tmp_path, "pretrained=nonexistent", f"out={tmp_path}/m.onnx")
    with pytest.raises(UserError, match="give out=PATH"):
        export_cli(tmp_path, "pretrained=true", "format=onnx")
    with pytest.raises(UserError, match=r"go in a list, ckpt_path=\[A,B\]"):  # the old comma form, quoted
        export_cli(tmp_path, f"ckpt_path='{weights},{weights}'")
    with pytest.raises(UserError, match="format must be one of onnx, onnx-int8, pt2, safetensors"):
        export_cli(tmp_path, f"ckpt_path={weights}", "format=tflite")
    with pytest.raises(UserError, match=r"out=.*m.safetensors: format=onnx writes a .onnx file.*name it .*m.onnx"):
        export_cli(tmp_path, f"ckpt_path={weights}", "format=onnx", f"out={tmp_path}/m.safetensors")
    assert not (tmp_path / "m.safetensors").exists()  # refused before anything was written
    if Path("/proc/self").is_dir():  # a folder whose file system answers "no such file" to a new file (Linux)
        with pytest.raises(UserError, match=r"^/proc: cannot write there \(.*\); write elsewhere \(out=PATH\)$"):
            export_cli(tmp_path, f"ckpt_path={weights}", "format=onnx", "out=/proc/m.onnx")


@pytest.mark.parametrize("fmt", ["onnx", "safetensors"])
def test_an_export_that_fails_its_parity_check_leaves_no_file_and_keeps_an_earlier_one(
    weights, tmp_path, monkeypatch, fmt
):
    """Exports are written beside their name and moved there once checked: a refused one is not left behind
    looking like an export, and does not destroy the file it would have replaced."""
    out = tmp_path / f"m.{fmt}"
    out.write_bytes(b"the earlier export")
    monkeypatch.setattr("emotion.serve.exporters.parity", lambda net, path, fmt: 1.0)
    with pytest.raises(UserError, match=rf"parity check failed: the {fmt} export differs .*not written"):
        export_cli(tmp_path, f"ckpt_path={weights}", f"format={fmt}", f"out={out}")
    assert out.read_bytes() == b"the earlier export"
    assert [p.name for p in tmp_path.iterdir() if p.suffix == f".{fmt}"] == [out.name]  # no temporary file either
    monkeypatch.undo()
    path, diff = export_cli(tmp_path, f"ckpt_path={weights}", f"format={fmt}", f"out={out}")
    assert path == out and diff < 1e-4 and list(Predictor(str(out)).class_names) == list(FER2013_CLASSES)
    assert [p.name for p in tmp_path.iterdir() if p.suffix == f".{fmt}"] == [out.name]
    umask = os.umask(0o022)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # the earlier file's mode, not a temporary file's 0600


def test_an_export_that_fails_leaves_no_folder_made_for_it(tmp_path):
    """The output folder is made to stage the export beside its name; a refused export used to leave it behind."""
    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(b"not a model")
    with pytest.raises(UserError, match="damaged.safetensors"):
        export_cli(tmp_path, f"ckpt_path={damaged}", "format=onnx", f"out={tmp_path}/exports/v2/m.onnx")
    assert not (tmp_path / "exports").exists()


def test_export_cli_writes_the_file_it_names(tmp_path, weights):
    out, diff = export_cli(tmp_path, f"ckpt_path={weights}", "format=safetensors", f"out={tmp_path}/copy.safetensors")
    assert out == tmp_path / "copy.safetensors" and out.is_file() and diff < 1e-4


def test_onnx_and_torch_predictors_agree_and_batch_faces(weights, tmp_path, astronaut):
    onnx_path, _ = export(str(weights), "onnx", str(tmp_path / "m.onnx"))
    torch_pred, onnx_pred = Predictor(str(weights)), Predictor(str(onnx_path))
    assert torch_pred.class_names == onnx_pred.class_names
    a, b = torch_pred.predict(astronaut), onnx_pred.predict(astronaut)
    assert len(a) == len(b) == 1
    assert np.abs(a[0].probs - b[0].probs).max() < 1e-4
    crops = np.random.default_rng(0).integers(0, 256, (5, 48, 48), dtype=np.uint8)
    assert onnx_pred.classify(crops).shape == (5, 7)
    assert np.allclose(onnx_pred.classify(crops, batch_size=2), onnx_pred.classify(crops), atol=1e-6)  # chunked


@pytest.mark.parametrize("tta", ["flip", "tencrop"])
def test_predictor_tta_matches_evaluates_tta_with_either_backend(weights, tmp_path, tta):
    """Predictor(tta=…) averages the same views as ``evaluate tta=…`` (numpy views vs torch views), with either
    backend; the views change the probabilities."""
    from emotion.models.checkpoint import load_net
    from emotion.models.module import EmotionModule

    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, (5, 48, 48), dtype=np.uint8)
    faces[:, :, :24] //= 3  # not mirror-symmetric, so flip matters
    with torch.inference_mode():
        module = EmotionModule(load_net(weights)).eval()
        expected = module.predict_proba(torch.from_numpy(faces).unsqueeze(1), tta=tta).numpy()
    onnx_path, _ = export(str(weights), "onnx", str(tmp_path / "m.onnx"))
    for path in (weights, onnx_path):
        got = Predictor(str(path), detector=None, tta=tta).classify(faces, batch_size=2)
        assert np.allclose(got, expected, atol=1e-5), (path, np.abs(got - expected).max())
        assert not np.allclose(got, Predictor(str(path), detector=None).classify(faces), atol=1e-4)
    with pytest.raises(ValueError, match="tta must be one of"):
        Predictor(str(weights), detector=None, tta="fivecrop")


def test_predict_cli_on_files_folders_and_bad_files(weights, tmp_path, astronaut, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    cv2.imwrite(str(folder / "astronaut.png"), astronaut)
    cv2.imwrite(str(folder / "wall.png"), np.full((200, 200), 128, np.uint8))  # no face
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 definitely not a jpeg")
    (folder / "zero.jpg").write_bytes(b"")  # a zero-byte file must not take the good rows down with it
    code = predict_main(
        [
            str(folder),
            str(tmp_path / "missing.png"),
            "--model",
            str(weights),
            "--json",
            "--annotate",
            str(tmp_path / "ann"),
        ]
    )
    captured = capsys.readouterr()
    rows = json.loads(captured.out)
    assert code == 1  # some files failed
    assert "5/5 files" in captured.err and "\r" not in captured.err  # progress, plain lines off a terminal
    by_file = {Path(r["file"]).name: r for r in rows}
    assert by_file["astronaut.png"]["label"] in Predictor(str(weights)).class_names
    assert "no face" in by_file["wall.png"]["error"]
    assert "not a readable image" in by_file["broken.jpg"]["error"]
    assert by_file["zero.jpg"]["error"] == "empty file (0 bytes)"
    assert "no such file" in by_file["missing.png"]["error"]
    assert (tmp_path / "ann" / "astronaut_annotated.png").is_file()


@pytest.fixture
def http_folder(tmp_path):
    """A local HTTP server over ``tmp_path/www`` (the network boundary, without the internet): its base URL."""
    www = tmp_path / "www"
    www.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield www, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def closed_port() -> int:
    """A local port nothing listens on: a download from it fails as one offline does (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_predict_reads_http_urls_and_says_why_a_download_failed(weights, astronaut, http_folder, tmp_path, capsys):
    import emotion

    www, base = http_folder
    cv2.imwrite(str(www / "astronaut.jpg"), astronaut)
    offline = f"http://127.0.0.1:{closed_port()}/face.jpg"
    urls = [f"{base}/astronaut.jpg?size=large", f"{base}/missing.jpg", offline, f"{base}/clip.mp4", "http://[::1/x.jpg"]
    code = predict_main([*urls, "--model", str(weights), "--json", "--annotate", str(tmp_path / "ann")])
    rows = {r["file"]: r for r in json.loads(capsys.readouterr().out)}
    assert code == 1
    assert rows[urls[0]]["label"] in Predictor(str(weights)).class_names  # the URL as typed, its "//" kept
    assert (tmp_path / "ann" / "astronaut_annotated.png").is_file()  # named after the URL's file
    assert rows[urls[1]]["error"] == "download failed: HTTP 404 File not found"
    assert rows[offline]["error"].startswith("could not download it (")
    assert "check the address and the network, or download the image and give its file" in rows[offline]["error"]
    assert rows[urls[3]]["error"].startswith(f"a video: python -m emotion.cam --source {urls[3]} ")  # not downloaded
    assert rows[urls[4]]["error"] == "not a valid URL (Invalid IPv6 URL)"
    faces = emotion.detect_emotions(f"{base}/astronaut.jpg", model=str(weights))  # the Python API reads URLs too
    assert [f.label for f in faces] == [rows[urls[0]]["label"]]


def test_predict_reads_gifs_names_what_it_did_not_read_and_points_videos_to_the_cam(
    weights, tmp_path, astronaut, face_video, capsys
):
    from PIL import Image

    folder = tmp_path / "mixed"
    (folder / "sub").mkdir(parents=True)
    Image.fromarray(cv2.cvtColor(astronaut, cv2.COLOR_BGR2RGB)).save(folder / "sub" / "animated.gif")
    (folder / "notes.txt").write_text("not a face")
    (folder / "clip.mp4").write_bytes(face_video.read_bytes())
    (folder / "._animated.gif").write_bytes(b"\x00\x05\x16\x07 a Mac's resource fork")  # hidden: not read, not failed
    (folder / ".DS_Store").write_bytes(b"\x00")
    assert predict_main([str(folder), "--model", str(weights), "--json"]) == 0  # what was read all succeeded
    captured = capsys.readouterr()
    rows = json.loads(captured.out)
    assert [Path(r["file"]).name for r in rows] == ["animated.gif"] and rows[0]["face"] == 0  # its face found
    note = next(line for line in captured.err.splitlines() if line.startswith("not read:"))
    assert "2 files without an image's extension" in note and str(folder / "notes.txt") in note
    assert f"{folder / 'clip.mp4'} (a video: python -m emotion.cam --source {folder / 'clip.mp4'} --headless" in note
    assert ".DS_Store" not in captured.err and "._animated" not in captured.err

    assert predict_main([str(folder / "clip.mp4"), "--model", str(weights), "--json"]) == 1  # named: it fails
    row = json.loads(capsys.readouterr().out)[0]
    assert row["error"].startswith(f"a video: python -m emotion.cam --source {folder / 'clip.mp4'} --headless")


def test_a_gif_is_read_by_pillow_where_opencv_has_no_gif_reader(astronaut, tmp_path, monkeypatch):
    from PIL import Image

    from emotion.data import decode as decode_module

    path = tmp_path / "face.gif"
    Image.fromarray(cv2.cvtColor(astronaut, cv2.COLOR_BGR2RGB)).save(path)
    data = path.read_bytes()
    by_opencv = decode_module.decode(data)
    monkeypatch.setattr(decode_module.cv2, "imdecode", lambda *a: None)  # OpenCV before 4.12: no GIF reader
    by_pillow = decode_module.decode(data)
    assert by_pillow is not None and by_pillow.shape == astronaut.shape
    if by_opencv is not None:  # the same palette decoded by either library
        assert np.abs(by_pillow.astype(int) - by_opencv).max() <= 1
    assert np.abs(by_pillow.astype(int) - astronaut).mean() < 8  # a 256-colour palette of the photo
    assert decode_module.decode(b"GIF89a damaged") is None  # a damaged GIF: no image, as OpenCV says


def test_songs_from_a_group_photo_say_whose_mood_it_is_and_can_average_every_face(weights, astronaut, tmp_path, capsys):
    from emotion.serve.mood import mood_of_image
    from emotion.songs.__main__ import main as songs_main

    frame = np.full((900, 1600, 3), 100, np.uint8)
    frame[100:612, 50:562] = astronaut  # the larger face
    frame[300:684, 1000:1384] = cv2.resize(cv2.flip(astronaut, 1), (384, 384))
    photo = tmp_path / "two.png"
    cv2.imwrite(str(photo), frame)
    faces = Predictor(str(weights)).predict(frame)
    assert len(faces) == 2 and faces[0].box[2] > faces[1].box[2]
    largest, group = mood_of_image(photo, str(weights)), mood_of_image(photo, str(weights), all_faces=True)
    assert np.allclose(largest.probs, faces[0].probs) and largest.whose == "the largest of 2 faces; --all-faces: all"
    assert np.allclose(group.probs, (faces[0].probs + faces[1].probs) / 2) and group.whose == "2 faces averaged"
    assert songs_main(["--from-image", str(photo), "--model", str(weights), "--all-faces", "-n", "2"]) == 0
    assert f"({group.label.split(' (')[1]} [match]" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        songs_main(["--emotion", "sad", "--all-faces"])
    assert "--all-faces goes with --from-image" in capsys.readouterr().err


def save_as_a_phone_does(upright_bgr: np.ndarray, path: Path) -> None:
    """A portrait photo as a phone stores it: the pixels turned sideways, the EXIF orientation tag (6) saying how to
    turn them back."""
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = 6  # display: turn 90° clockwise
    stored = cv2.cvtColor(np.ascontiguousarray(np.rot90(upright_bgr)), cv2.COLOR_BGR2RGB)  # turned counter-clockwise
    Image.fromarray(stored).save(path, exif=exif.tobytes(), quality=95)


def test_a_phone_photo_stored_sideways_is_read_upright_by_path_and_as_a_pil_image(weights, astronaut, tmp_path, capsys):
    from PIL import Image

    from emotion.serve.faces import iou
    from emotion.serve.images import as_frame, read_image

    save_as_a_phone_does(astronaut, tmp_path / "phone.jpg")
    Image.fromarray(cv2.cvtColor(astronaut, cv2.COLOR_BGR2RGB)).save(tmp_path / "upright.jpg", quality=95)
    read = read_image(tmp_path / "phone.jpg")
    assert read.shape == astronaut.shape and np.abs(read.astype(int) - astronaut).mean() < 4  # upright, not turned
    assert np.abs(as_frame(Image.open(tmp_path / "phone.jpg")).astype(int) - read).mean() < 1  # PIL: the same
    assert (
        predict_main([str(tmp_path / "upright.jpg"), str(tmp_path / "phone.jpg"), "--model", str(weights), "--json"])
        == 0
    )
    upright, phone = json.loads(capsys.readouterr().out)
    assert iou(upright["box"], phone["box"]) > 0.8  # the same face, in the upright photo's pixels
    assert max(abs(upright["probs"][c] - phone["probs"][c]) for c in upright["probs"]) < 0.05


def test_an_iphone_heic_photo_is_read_and_without_pillow_heif_the_error_says_what_to_install(
    weights, astronaut, tmp_path, capsys, monkeypatch
):
    pillow_heif = pytest.importorskip("pillow_heif")
    from PIL import Image

    from emotion.serve.faces import iou

    pillow_heif.register_heif_opener()
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(cv2.cvtColor(astronaut, cv2.COLOR_BGR2RGB)).save(photos / "IMG_0001.HEIC", quality=95)
    cv2.imwrite(str(photos / "IMG_0002.png"), astronaut)
    assert predict_main([str(photos), "--model", str(weights), "--json"]) == 0  # the folder's .HEIC file is listed
    heic, png = json.loads(capsys.readouterr().out)
    assert heic["file"].endswith("IMG_0001.HEIC") and iou(heic["box"], png["box"]) > 0.9
    monkeypatch.setitem(sys.modules, "pillow_heif", None)  # an install without it
    assert predict_main([str(photos / "IMG_0001.HEIC"), "--model", str(weights), "--json"]) == 1
    (row,) = json.loads(capsys.readouterr().out)
    assert row["error"].startswith("a HEIC/HEIF photo (the iPhone's format), which needs pillow-heif: pip install")


def test_predict_finds_the_small_faces_of_a_large_group_photo_down_to_min_face(weights, astronaut, tmp_path, capsys):
    cv2.imwrite(str(tmp_path / "group.jpg"), group_photo(astronaut, 0.7)[0])  # faces ~63 px
    assert predict_main([str(tmp_path / "group.jpg"), "--model", str(weights), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 6 and all(50 < r["box"][2] < 80 for r in rows)
    assert predict_main([str(tmp_path / "group.jpg"), "--model", str(weights), "--json", "--min-face", "100"]) == 1
    assert "no face detected" in json.loads(capsys.readouterr().out)[0]["error"]


def test_the_api_takes_the_smallest_face_too(weights, astronaut):
    import emotion

    photo, _ = group_photo(astronaut, 0.7)
    assert len(emotion.detect_emotions(photo, model=str(weights))) == 6
    assert emotion.detect_emotions(photo, model=str(weights), min_face=100) == []


def test_predict_reads_16_bit_and_transparent_images_as_their_8_bit_colour_selves(weights, astronaut, tmp_path, capsys):
    gray = cv2.cvtColor(astronaut, cv2.COLOR_BGR2GRAY)
    cv2.imwrite(str(tmp_path / "gray.png"), gray)
    cv2.imwrite(str(tmp_path / "gray16.png"), gray.astype(np.uint16) * 257)  # 16 bits: the same picture
    cv2.imwrite(str(tmp_path / "colour.png"), astronaut)
    cv2.imwrite(str(tmp_path / "alpha.png"), cv2.cvtColor(astronaut, cv2.COLOR_BGR2BGRA))
    names = ["gray.png", "gray16.png", "colour.png", "alpha.png"]
    assert predict_main([*(str(tmp_path / n) for n in names), "--model", str(weights), "--json"]) == 0
    gray8, gray16, colour, alpha = json.loads(capsys.readouterr().out)
    assert gray16 | {"file": ""} == gray8 | {"file": ""} and alpha | {"file": ""} == colour | {"file": ""}


def test_predict_reports_progress_by_count_and_by_time(monkeypatch, capsys):
    from emotion.serve.predict import Progress

    clock = iter([0.0, 1.0, 2.0, 9.0, 10.0, 11.0])  # the start, then one reading per file
    monkeypatch.setattr("emotion.serve.predict.time.monotonic", lambda: next(clock))
    progress = Progress(total=4, every=100, seconds=5.0)
    for done in range(1, 5):
        progress(done)
    assert capsys.readouterr().err.splitlines() == ["3/4 files", "4/4 files"]  # 9 s since the start, then the end


def test_predict_and_songs_on_empty_input_say_so(weights, tmp_path, capsys):
    from emotion.songs.__main__ import main as songs_main

    (tmp_path / "empty").mkdir()
    assert predict_main([str(tmp_path / "empty"), "--model", str(weights)]) == 2  # nothing to do: a usage error
    assert "error: no image files in" in capsys.readouterr().err
    (tmp_path / "zero.jpg").write_bytes(b"")
    assert songs_main(["--from-image", str(tmp_path / "zero.jpg"), "--model", str(weights)]) == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'zero.jpg'}: empty file (0 bytes)"


def test_predict_cli_no_detect_and_success_exit_code(weights, tmp_path, capsys):
    face = tmp_path / "face.png"
    cv2.imwrite(str(face), np.random.default_rng(1).integers(0, 256, (48, 48), dtype=np.uint8))
    assert predict_main([str(face), "--no-detect", "--model", str(weights), "--csv"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("file,face,label,confidence,x,y,w,h,angry,disgust,fear,happy,sad,surprise,neutral")
    assert len(lines) == 2
    img = cv2.imread(str(face), cv2.IMREAD_GRAYSCALE)
    for tta in ("none", "tencrop"):
        assert predict_main([str(face), "--no-detect", "--model", str(weights), "--json", "--tta", tta]) == 0
        probs = json.loads(capsys.readouterr().out)[0]["probs"]
        expected = Predictor(str(weights), detector=None, tta=tta).classify(img[None])[0]
        assert list(probs.values()) == pytest.approx(expected.tolist(), abs=1e-4)  # JSON rounds to 4 decimals
    with pytest.raises(SystemExit):
        predict_main([str(face), "--tta", "fivecrop"])
    assert "invalid choice: 'fivecrop'" in capsys.readouterr().err


def test_tracker_smooths_probabilities():
    names = ("a", "b")
    tracker = FaceTracker(alpha=0.5)
    tracker.update([Face((0, 0, 10, 10), np.array([1.0, 0.0]), names)])
    out = tracker.update([Face((1, 0, 10, 10), np.array([0.0, 1.0]), names)])
    assert np.allclose(out[0].probs, [0.5, 0.5])  # same track (IoU), averaged
    out = tracker.update([Face((100, 100, 10, 10), np.array([0.0, 1.0]), names)])
    assert np.allclose(out[0].probs, [0.0, 1.0])  # a new face starts its own track


def test_cam_headless_over_a_video_with_a_real_face(weights, face_video, tmp_path):
    predictor = Predictor(str(weights))
    stats, mood = run(predictor, str(face_video), headless=True, output=tmp_path / "frames")
    assert stats.frames == 25
    assert stats.frames_with_faces >= 15  # the face is found in (nearly) every frame that has one
    assert set(stats.labels) <= set(predictor.class_names)
    assert len(list((tmp_path / "frames").glob("frame_*.png"))) == 25
    assert mood is not None and mood.shape == (7,)


def test_cam_over_a_folder_of_photos_reads_them_upright_keeps_every_readable_one_and_counts_the_rest(
    weights, astronaut, tmp_path, capsys
):
    import json

    from emotion.serve.cam import main as cam_main
    from emotion.serve.faces import iou

    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "a_upright.png"), astronaut)
    save_as_a_phone_does(astronaut, photos / "b_phone.jpg")
    (photos / "c_broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    cv2.imwrite(str(photos / "d_wall.png"), np.full((200, 300), 128, np.uint8))  # another size, gray, no face
    (photos / "e_notes.txt").write_text("not an image: named, not read")
    video, table = tmp_path / "out.avi", tmp_path / "t.json"
    args = [
        "--model",
        str(weights),
        "--source",
        str(photos),
        "--headless",
        "--output",
        str(video),
        "--table",
        str(table),
    ]
    assert cam_main(args) == 0
    captured = capsys.readouterr()
    assert f"warning: skipped {photos / 'c_broken.jpg'}: not a readable image" in captured.err
    assert "skipped 1 of 4 images (unreadable)" in captured.err and captured.out.startswith("3 frames,")
    assert f"warning: not read: 1 file without an image's extension: {photos / 'e_notes.txt'}" in captured.err
    rows = json.loads(table.read_text())
    assert [r["frame"] for r in rows][:2] == [0, 1]  # (frames are a stream: the wall may hold the face a while)
    assert iou(rows[0]["box"], rows[1]["box"]) > 0.8  # the phone photo read upright
    cap = cv2.VideoCapture(str(video))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 3  # the smaller image too, letterboxed, not dropped
    cap.release()


def test_the_cam_says_which_faces_its_scans_miss_in_a_4k_source_and_the_flag_that_finds_them(weights, tmp_path, capsys):
    from emotion.serve.cam import small_faces_note, video_scanner
    from emotion.serve.faces import VideoFaceDetector

    frames = tmp_path / "4k"
    frames.mkdir()
    cv2.imwrite(str(frames / "a.png"), np.full((2160, 3840), 90, np.uint8))
    run(Predictor(str(weights)), str(frames), headless=True, output=tmp_path / "out.avi")
    err = capsys.readouterr().err
    assert "note: the scans search this 3840-px-wide source at 640 px: faces narrower than about 102 px" in err
    assert "--min-face 48 finds them" in err
    default = VideoFaceDetector()
    assert small_faces_note(default, 1920) is None  # 1080p: 60-px faces are found in every frame
    finer = VideoFaceDetector(scanner=video_scanner("yunet", None, 48, None))
    assert small_faces_note(finer, 3840) is None  # --min-face given: the finer search runs
    assert small_faces_note(VideoFaceDetector(scanner=video_scanner("haar", None, None, None)), 3840) is None


def test_predict_reads_an_image_piped_into_standard_input(weights, astronaut, tmp_path, monkeypatch, capsys):
    """cat photo.jpg | python -m emotion.predict - : the same faces as the file; - twice or with nothing piped is a
    usage error, not a second, empty read or a wait for the keyboard."""
    import io
    import types

    path = tmp_path / "a.png"
    cv2.imwrite(str(path), astronaut)
    assert predict_main([str(path), "--model", str(weights), "--json"]) == 0
    expected = json.loads(capsys.readouterr().out)
    piped = types.SimpleNamespace(buffer=io.BytesIO(path.read_bytes()), isatty=lambda: False)
    monkeypatch.setattr(sys, "stdin", piped)
    assert predict_main(["-", "--model", str(weights), "--json", "--annotate", str(tmp_path / "ann")]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r.pop("annotated") for r in rows] == [str(tmp_path / "ann" / "stdin_annotated.png")]
    assert (tmp_path / "ann" / "stdin_annotated.png").is_file()
    assert [r.pop("file") for r in rows] == ["-"]
    assert rows == [{k: v for k, v in r.items() if k != "file"} for r in expected]  # the file's faces, box and probs
    with pytest.raises(SystemExit):
        predict_main(["-", "-", "--model", str(weights)])
    assert "- (standard input) can be read once" in capsys.readouterr().err
    monkeypatch.setattr(sys, "stdin", types.SimpleNamespace(buffer=io.BytesIO(b""), isatty=lambda: True))
    with pytest.raises(SystemExit):
        predict_main(["-", "--model", str(weights)])
    assert "nothing is piped" in capsys.readouterr().err


def test_cam_reads_a_stream_url_and_says_when_it_cannot(weights, face_video, http_folder):
    """An IP camera's URL (here a local HTTP server's video, as such a camera serves one) is read frame by frame;
    an unreachable one is a one-line SourceError (the whole command: exit 2), not "video … does not exist"."""
    www, base = http_folder
    (www / face_video.name).write_bytes(face_video.read_bytes())
    stats, _ = run(Predictor(str(weights)), f"{base}/{face_video.name}", headless=True)
    assert stats.frames == 25 and stats.frames_with_faces >= 15
    with pytest.raises(SourceError, match=r"^cannot open stream rtsp://127\.0\.0\.1:\d+/cam: the camera or server is"):
        open_source(f"rtsp://127.0.0.1:{closed_port()}/cam")
    from emotion.serve.cam import main as cam_main

    assert cam_main(["--model", str(weights), "--source", f"http://127.0.0.1:{closed_port()}/live", "--headless"]) == 2


def test_cam_errors_for_missing_camera_and_video(tmp_path, capfd):
    with pytest.raises(SourceError, match="no camera at index 9"):
        open_source("9")
    assert capfd.readouterr().err == ""  # only our message: OpenCV's own log line about the index is held back
    with pytest.raises(SourceError, match="does not exist"):
        open_source(str(tmp_path / "nope.mp4"))
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(SourceError, match="cannot open video"):
        open_source(str(bad))


def test_labels_come_from_the_model_file(tmp_path, astronaut):
    names = ("neutral", "happy")  # a two-class model: apps must not assume FER2013's list
    path = save_safetensors(EmotionCNN(class_names=names).eval(), tmp_path / "two.safetensors")
    faces = Predictor(str(path)).predict(astronaut)
    assert faces and faces[0].class_names == names and faces[0].label in names and faces[0].probs.shape == (2,)


def test_one_pixel_image_is_reported_or_classified(weights, tmp_path, capsys):
    tiny = tmp_path / "dot.png"
    cv2.imwrite(str(tiny), np.full((1, 1), 200, np.uint8))
    assert predict_main([str(tiny), "--model", str(weights), "--json"]) == 1
    assert "no face detected" in json.loads(capsys.readouterr().out)[0]["error"]
    assert predict_main([str(tiny), "--model", str(weights), "--json", "--no-detect"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["box"] == [0, 0, 1, 1]


def test_min_face_skips_smaller_faces(astronaut):
    from emotion.serve.faces import FaceDetector

    found = FaceDetector()(astronaut)
    assert len(found) >= 1
    face_side = int(found[0][2])
    assert len(FaceDetector(min_face=face_side // 2)(astronaut)) >= 1  # still looked for
    assert len(FaceDetector(min_face=face_side * 3)(astronaut)) == 0  # smaller than the minimum: not searched


def test_int8_export_keeps_metadata_quantizes_only_the_network_and_agrees(weights, folder_data, tmp_path):
    out, disagreement = export(str(weights), "onnx-int8", str(tmp_path / "m.int8.onnx"), calib=str(folder_data))
    assert 0 <= disagreement <= 0.05
    model = onnx.load(str(out))
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["class_names"])[6] == "neutral" and "int8" in meta["quantization"]
    dequantized = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    # the network's four convolutions read int8 weights
    assert len(convs) == 4 and all(n.input[1] in dequantized for n in convs)
    int8_pred, float_pred = Predictor(str(out)), Predictor(str(weights))
    assert int8_pred.class_names == float_pred.class_names
    crops = np.random.default_rng(0).integers(0, 256, (6, 48, 48), dtype=np.uint8)
    probs = int8_pred.classify(crops)
    assert probs.shape == (6, 7) and np.allclose(probs.sum(1), 1, atol=1e-3)
    assert np.abs(probs - float_pred.classify(crops)).max() < 0.05


def test_int8_export_refuses_without_calibration_or_when_it_disagrees(
    weights, folder_data, tmp_path, capsys, monkeypatch
):
    out = tmp_path / "m.int8.onnx"
    int8 = [f"ckpt_path={weights}", "format=onnx-int8", f"out={out}"]
    with pytest.raises(UserError, match="needs calib=DIR"):
        export_cli(tmp_path, *int8)
    with pytest.raises(UserError, match="nowhere"):
        export_cli(tmp_path, *int8, f"calib={tmp_path}/nowhere")
    monkeypatch.setattr("emotion.serve.quantize.MIN_AGREEMENT", 1.01)  # no model can pass: the guard must refuse
    with pytest.raises(UserError, match="agrees with the float model on only"):
        export_cli(tmp_path, *int8, f"calib={folder_data}")
    assert not out.exists() and not list(tmp_path.glob(".m.*"))  # nor its temporary file


def test_ensemble_export_averages_its_members_and_serves_the_predictor(weights, tmp_path, astronaut):
    """``ckpt_path=[A,B]`` exports one model whose probabilities are the mean of A's and B's, each member with its own
    preprocessing (here: EmotionCNN with its own normalisation + EmotionVGG on 24-px pooled inputs)."""
    from emotion.models import EmotionVGG
    from emotion.models.checkpoint import load_net

    torch.manual_seed(2)
    vgg = save_safetensors(EmotionVGG(widths=(8, 16), fc=16, stem_pool=2).eval(), tmp_path / "vgg.safetensors")
    export_cli(tmp_path, f"ckpt_path=[{weights},{vgg}]", "format=safetensors", f"out={tmp_path}/ens.safetensors")
    ens = load_net(tmp_path / "ens.safetensors")
    assert [m["arch"] for m in ens.spec()["arch_kwargs"]["members"]] == ["emotion_cnn", "emotion_vgg"]
    faces = torch.randint(0, 256, (5, 1, 48, 48), dtype=torch.uint8)
    with torch.no_grad():
        expected = (load_net(weights).predict_proba(faces) + load_net(vgg).predict_proba(faces)) / 2
        assert torch.allclose(ens.predict_proba(faces), expected, atol=1e-6)
    onnx_path, diff = export(str(tmp_path / "ens.safetensors"), "onnx", str(tmp_path / "ens.onnx"))
    assert diff < 1e-4
    torch_faces = Predictor(str(tmp_path / "ens.safetensors")).predict(astronaut)
    onnx_faces = Predictor(str(onnx_path)).predict(astronaut)
    assert len(torch_faces) == len(onnx_faces) == 1
    assert np.allclose(torch_faces[0].probs, onnx_faces[0].probs, atol=1e-4)


def test_combine_average_exports_one_network_with_the_mean_of_the_weights(weights, tmp_path):
    """``combine=average``: one network (not an ensemble) whose every weight is the members' mean, uncalibrated when
    a member was calibrated (a fine-tune and its shipped start); it refuses networks of different architectures and a
    single file, each in one line."""
    from emotion.models.checkpoint import load_net

    torch.manual_seed(3)
    other = EmotionCNN(mean=0.45, std=0.3, temperature=0.9).eval()  # same architecture, other weights, calibrated
    second = save_safetensors(other, tmp_path / "other.safetensors")
    out = tmp_path / "soup.safetensors"
    export_cli(tmp_path, f"ckpt_path=[{second},{weights}]", "combine=average", "format=safetensors", f"out={out}")
    soup, a, b = load_net(out), load_net(weights), load_net(second)
    assert b.temperature == 0.9 and soup.temperature == 1.0
    assert soup.spec() == {**b.spec(), "temperature": 1.0} and soup.spec()["arch"] == "emotion_cnn"
    for name, value in soup.state_dict().items():
        assert torch.allclose(value.float(), (a.state_dict()[name].float() + b.state_dict()[name].float()) / 2)
    faces = torch.randint(0, 256, (4, 1, 48, 48), dtype=torch.uint8)
    with torch.no_grad():  # a weight average is not the probability average an ensemble gives
        assert not torch.allclose(soup.predict_proba(faces), (a.predict_proba(faces) + b.predict_proba(faces)) / 2)
    wider = save_safetensors(EmotionCNN(mean=0.5, std=0.25).eval(), tmp_path / "wider.safetensors")
    with pytest.raises(UserError, match="differs from network 0 in mean, std.*combine=ensemble"):
        export_cli(tmp_path, f"ckpt_path=[{weights},{wider}]", "combine=average", "format=safetensors")
    with pytest.raises(UserError, match="combine=average averages the weights of several files"):
        export_cli(tmp_path, f"ckpt_path={weights}", "combine=average", "format=safetensors")
    with pytest.raises(UserError, match="combine must be one of ensemble, average"):
        export_cli(tmp_path, f"ckpt_path=[{weights},{second}]", "combine=median", "format=safetensors")


def test_an_ensembles_members_may_be_shipped_names_or_files(weights, tmp_path):
    from emotion.models.pretrained import weights_path

    files = model_files(make_cfg(tmp_path, [f"ckpt_path=[emotion_vgg,{weights},emotion_cnn]"], config_name="export"))
    assert files == [str(weights_path("emotion_vgg")), str(weights), str(weights_path("emotion_cnn"))]
    with pytest.raises(UserError, match="neither a model file nor a shipped model.*emotion_cnn"):
        model_files(make_cfg(tmp_path, ["ckpt_path=[emotion_vgg,no_such_model]"], config_name="export"))


def test_cam_without_a_display_is_a_one_line_error_not_a_qt_abort(weights, monkeypatch, capsys):
    from emotion.serve.cam import main as cam_main

    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr("sys.platform", "linux")
    assert cam_main(["--model", str(weights), "--source", "nowhere.mp4"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no display") and "--headless --output" in err and "\n" not in err


def test_serving_imports_no_training_stack_and_onnx_serving_no_torch(weights, tmp_path):
    onnx_path, _ = export(str(weights), "onnx", str(tmp_path / "m.onnx"))
    code = (
        "import sys\nimport numpy as np\n"
        "import emotion.serve.predict, emotion.serve.cam, emotion.songs.__main__\n"
        "from emotion.serve.predictor import Predictor\n"
        "heavy = ('torch', 'lightning', 'torchmetrics', 'hydra', 'matplotlib', 'tensorboard')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
        f"p = Predictor({str(onnx_path)!r}, detector=None, tta='tencrop')\n"
        "probs = p.classify(np.zeros((2, 48, 48), np.uint8))\n"
        "print(probs.shape, sorted(m for m in heavy if m in sys.modules))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.splitlines() == ["[]", "(2, 7) []"]


def test_torchscript_format_points_to_pt2(weights, tmp_path):
    with pytest.raises(UserError, match="format=torchscript was replaced by format=pt2"):
        export_cli(tmp_path, f"ckpt_path={weights}", "format=torchscript", f"out={tmp_path}/m.pt")


def test_songs_from_cam_get_the_mood_the_cam_measured(weights, face_video, tmp_path, capsys):
    """songs asks serving for a mood (emotion.serve.mood): the mean probabilities of the last seconds of the video,
    the same the cam writes with --mood-out."""
    import json

    from emotion.serve.cam import main as cam_main
    from emotion.songs.__main__ import main as songs_main

    args = ["--model", str(weights)]
    assert (
        cam_main(
            [
                "--source",
                str(face_video),
                "--headless",
                "--max-frames",
                "10",
                "--mood-out",
                str(tmp_path / "m.json"),
                *args,
            ]
        )
        == 0
    )
    mood = json.loads((tmp_path / "m.json").read_text())
    label = mood["class_names"][int(np.argmax(mood["probs"]))]
    capsys.readouterr()
    assert songs_main(["--from-cam", str(face_video), *args, "--frames", "10", "-n", "3"]) == 0
    out = capsys.readouterr().out
    assert f"{label} ({max(mood['probs']):.0%})" in out
    assert songs_main(["--from-cam", str(tmp_path / "nope.mp4"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: video {tmp_path / 'nope.mp4'} does not exist"
    with pytest.raises(SystemExit):
        songs_main(["--emotion", "sad", "--live"])


def test_detect_emotions_takes_a_path_a_pil_image_or_an_array_in_either_colour_order(astronaut, tmp_path):
    """One call for the common case; every input form gives the same faces as the BGR array OpenCV reads."""
    from PIL import Image

    import emotion

    expected = [f.to_dict() for f in emotion.detect_emotions(astronaut)]
    assert len(expected) == 1 and expected[0]["label"] in emotion.FER2013_CLASSES
    cv2.imwrite(str(tmp_path / "a.png"), astronaut)
    rgb = cv2.cvtColor(astronaut, cv2.COLOR_BGR2RGB)
    for image, colour in ((tmp_path / "a.png", "bgr"), (str(tmp_path / "a.png"), "bgr"), (Image.fromarray(rgb), "bgr"),
                          (rgb, "rgb"), (cv2.cvtColor(rgb, cv2.COLOR_RGB2RGBA), "rgb")):  # fmt: skip
        assert [f.to_dict() for f in emotion.detect_emotions(image, colour=colour)] == expected, type(image)
    swapped = emotion.detect_emotions(rgb)  # RGB read as BGR: other pixels, so (almost surely) other numbers
    assert [f.to_dict()["probs"] for f in swapped] != [e["probs"] for e in expected]
    with pytest.raises(ValueError, match="colour='rgba'"):
        emotion.detect_emotions(rgb, colour="rgba")
    with pytest.raises(ValueError, match=r"^.*missing\.jpg: no such file$"):  # the file named: it may be one of many
        emotion.detect_emotions(tmp_path / "missing.jpg")
    with pytest.raises(ValueError, match="must be uint8"):
        emotion.detect_emotions(np.zeros((4, 4, 2), np.float32))


def test_detect_emotions_takes_matplotlibs_float_images_and_names_what_it_cannot_take(astronaut, tmp_path):
    """plt.imread of a PNG gives floats in 0..1 (as scikit-image does): refused before; cv2.imread's None and an empty
    array were an unhelpful message and an OpenCV assertion."""
    import emotion

    rgb = cv2.cvtColor(astronaut, cv2.COLOR_BGR2RGB)
    expected = [f.to_dict() for f in emotion.detect_emotions(rgb, colour="rgb")]
    assert [f.to_dict() for f in emotion.detect_emotions(rgb.astype(np.float32) / 255, colour="rgb")] == expected
    with pytest.raises(ValueError, match=r"values in 0\.\.1 .*got 0\.\.255: divide by its maximum"):
        emotion.detect_emotions(rgb.astype(np.float64), colour="rgb")  # 0..255 floats: not guessed
    with pytest.raises(ValueError, match=r"got 0\.\.0\.98\d* or NaN/inf: divide"):
        emotion.detect_emotions(np.where(rgb > 250, np.nan, rgb / 255), colour="rgb")
    with pytest.raises(ValueError, match="got None instead of an image .cv2.imread returns None"):
        emotion.detect_emotions(cv2.imread(str(tmp_path / "missing.png")))
    with pytest.raises(ValueError, match=r"an empty image array \(shape \(0, 0\)\)"):
        emotion.detect_emotions(np.zeros((0, 0), np.uint8))


def test_detect_emotions_takes_an_image_files_bytes_or_a_binary_file(astronaut, tmp_path):
    """What a web server receives (an upload's bytes, a file object) is decoded as the file would be."""
    import io

    import emotion

    path = tmp_path / "a.jpg"
    cv2.imwrite(str(path), astronaut)
    expected = [f.to_dict() for f in emotion.detect_emotions(path)]
    data = path.read_bytes()
    with path.open("rb") as opened:
        for image in (data, bytearray(data), memoryview(data), io.BytesIO(data), opened):
            assert [f.to_dict() for f in emotion.detect_emotions(image)] == expected, type(image)
    with pytest.raises(ValueError, match=r"^image bytes: empty file \(0 bytes\)$"):
        emotion.detect_emotions(b"")
    with pytest.raises(ValueError, match="^image bytes: not a readable image"):
        emotion.detect_emotions(io.BytesIO(b"<html>not an image</html>"))
    with path.open() as text, pytest.raises(ValueError, match="a file opened in text mode: open it with 'rb'"):
        emotion.detect_emotions(text)


def test_cam_writes_every_face_of_every_frame_with_its_track_and_a_picture_over_time(weights, face_video, tmp_path):
    import csv
    import json

    from emotion.serve.cam import main as cam_main

    args = ["--model", str(weights), "--source", str(face_video), "--headless"]
    assert cam_main([*args, "--table", str(tmp_path / "t.json"), "--plot", str(tmp_path / "t.png")]) == 0
    rows = json.loads((tmp_path / "t.json").read_text())
    frames = [r["frame"] for r in rows]
    from emotion.serve.faces import VideoFaceDetector

    held = VideoFaceDetector().max_missed  # a lost face keeps its box this many frames
    assert len(rows) >= 15 and frames == sorted(frames) and max(frames) < 20 + held  # frames 20-24 have no face
    fps = cv2.VideoCapture(str(face_video)).get(cv2.CAP_PROP_FPS)
    assert all(r["time_s"] == round(r["frame"] / fps, 4) for r in rows)  # the video's clock, not the wall's
    assert {r["track"] for r in rows} == {1}  # one face, one track, followed through the drift
    r = rows[0]
    assert set(r["probs"]) == set(Predictor(str(weights)).class_names) and len(r["box"]) == 4
    assert abs(sum(r["probs"].values()) - 1) < 1e-3 and r["smoothed_label"] in r["probs"]
    assert cv2.imread(str(tmp_path / "t.png")) is not None
    assert cam_main([*args, "--table", str(tmp_path / "t.csv")]) == 0
    table = list(csv.reader((tmp_path / "t.csv").open()))
    assert table[0][:7] == ["frame", "time_s", "track", "x", "y", "w", "h"] and len(table) == len(rows) + 1
    for flag, name in (("--table", "t.xyz"), ("--plot", "t.jpg"), ("--mood-out", "m.png")):  # refused, not written
        with pytest.raises(SystemExit):
            cam_main([*args, flag, str(tmp_path / name)])
        assert not (tmp_path / name).exists()
    (tmp_path / "taken").write_text("a file where a folder would go")
    for flag, name in (("--table", "t.csv"), ("--plot", "t.png"), ("--mood-out", "m.json")):  # before the session
        with pytest.raises(SystemExit) as exc:
            cam_main([*args, flag, str(tmp_path / "taken" / name)])
        assert exc.value.code == 2


def test_predict_piped_into_head_exits_quietly(weights, tmp_path):
    """``predict … --csv | head -1``: the reader closes the pipe early; no BrokenPipeError traceback."""
    for i in range(400):
        cv2.imwrite(str(tmp_path / f"face{i:03d}.png"), np.full((48, 48), i % 250, np.uint8))
    cmd = f"{sys.executable} -m emotion.predict {tmp_path} --model {weights} --no-detect --csv | head -1"
    res = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.stdout.startswith("file,") and len(res.stdout.splitlines()) == 1
    assert "Traceback" not in res.stderr and "BrokenPipe" not in res.stderr, res.stderr[-1500:]
    assert res.returncode == 0


@pytest.mark.parametrize("command", ["train", "evaluate", "predict"])
def test_rich_output_into_a_reader_that_is_gone_finishes_the_work_quietly(command, weights, folder_data, tmp_path):
    """``… | true`` where rich writes the output (progress bars, tables), whose own answer is status 1 at once: no
    traceback, status 0, and every file the command writes is written."""
    faces = folder_data / "test" / "happy"
    args = {
        "train": "experiment=demo data.synthesize.n_train=12 data.synthesize.n_val=4 data.synthesize.n_test=4 "
        "data.batch_size=16 trainer.max_epochs=1 run_name=piped",  # with its progress bar
        "evaluate": f"ckpt_path={weights} data.root={folder_data} run_name=piped",
        "predict": f"{faces} --model {weights} --no-detect --annotate {tmp_path}/annotated",
    }[command]
    cmd = f"{sys.executable} -m emotion.{command} {args} | true"
    env = {**os.environ, "EMOTION_ROOT": str(tmp_path)}
    res = subprocess.run(
        ["bash", "-o", "pipefail", "-c", cmd], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180
    )
    assert "Traceback" not in res.stderr and "BrokenPipe" not in res.stderr, res.stderr[-1500:]
    assert res.returncode == 0, res.stderr[-1500:]
    if command == "train":
        assert json.loads((tmp_path / "logs/train/runs/piped/metrics.json").read_text())["epochs_trained"] == 1
    elif command == "evaluate":
        assert json.loads((tmp_path / "logs/eval/runs/piped/eval.json").read_text())["n_images"] == 14
    else:
        assert len(list((tmp_path / "annotated").iterdir())) == len(list(faces.iterdir())) > 0


@pytest.mark.parametrize("command", ["songs --emotion happy -n 8", "audit {data} --out {tmp}/audit"])
def test_commands_piped_into_a_reader_that_is_gone_exit_quietly(command, folder_data, tmp_path):
    """``… | true``: the reader never reads (it is gone before anything is printed); no traceback, status 0."""
    args = command.format(data=folder_data, tmp=tmp_path)
    cmd = f"{sys.executable} -m emotion.{args} | true"
    res = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in res.stderr and "BrokenPipe" not in res.stderr, res.stderr[-1500:]
    assert res.returncode == 0


def test_the_cam_classifies_aligned_crops_as_predict_does(face_video, tmp_path):
    """With the shipped default model: the cam's first frame, whose only search is an upright YuNet one, gives the
    probabilities ``predict`` gives that frame with the same search: the same landmarks, the same aligned crop (not
    the square the cam once cut)."""
    import json
    from dataclasses import replace

    from emotion.serve.cam import main as cam_main
    from emotion.serve.faces import photo_detector

    table = tmp_path / "t.json"
    assert cam_main(["--source", str(face_video), "--headless", "--table", str(table)]) == 0
    first = json.loads(table.read_text())[0]
    assert first["frame"] == 0
    ok, frame = cv2.VideoCapture(str(face_video)).read()
    predictor = Predictor.from_pretrained(detector=replace(photo_detector(), rotations=(0.0,)))
    (face,) = predictor.predict(frame)
    assert first["box"] == list(face.box)
    assert np.allclose([first["probs"][c] for c in predictor.class_names], face.probs, atol=1e-3)
    square = Predictor.from_pretrained(detector=None).predict(frame, np.array([face.box]))[0]
    assert not np.allclose(square.probs, face.probs, atol=1e-2)  # so the match above is the alignment's


BLOCK_TORCH = "import sys\nsys.modules['torch'] = None  # a serving install: `import torch` fails\n"


def test_without_torch_predict_and_the_python_api_run_the_default_model_and_a_torch_model_is_a_clear_error(
    astronaut, tmp_path
):
    import json

    photo = tmp_path / "astronaut.png"
    cv2.imwrite(str(photo), astronaut)
    code = BLOCK_TORCH + (
        "import emotion\nfrom emotion.serve.predict import main\n"
        f"faces = emotion.detect_emotions({str(photo)!r})\n"
        "print(len(faces), faces[0].label)\n"
        f"code = main([{str(photo)!r}, '--json'])\n"
        f"bad = main([{str(photo)!r}, '--model', 'emotion_cnn'])\n"
        "print(code, bad, 'torch' in sys.modules and sys.modules['torch'] is not None)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    lines = res.stdout.strip().splitlines()
    n, label = lines[0].split()
    assert n == "1" and label in FER2013_CLASSES
    assert json.loads("\n".join(lines[1:-1]))[0]["label"] == label  # the same model, the same answer
    assert lines[-1] == "0 2 False"
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and "no torch" in err[0] and "emotion[train]" in err[0]


@pytest.mark.parametrize("module", ["emotion.train", "emotion.evaluate", "emotion.calibrate", "emotion.export"])
def test_without_torch_the_training_apps_say_what_to_install_in_one_line(module):
    code = BLOCK_TORCH + f"import runpy\nrunpy.run_module({module!r}, run_name='__main__', alter_sys=True)\n"
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.strip() == (
        f"error: python -m {module} needs the training stack, which this installation lacks (torch): "
        "make install in a clone of the project (pip install -e '.[train]': the training commands read its conf/). "
        "A serving install runs predict, cam, songs and the Python API."
    )


def _unwritable() -> Path | None:
    """A folder even root cannot write into (sysfs), or None where there is none."""
    probe = Path("/sys/emotion-probe")
    try:
        probe.mkdir()
    except OSError:
        return probe
    probe.rmdir()
    return None


UNWRITABLE = _unwritable()
needs_unwritable = pytest.mark.skipif(UNWRITABLE is None, reason="no read-only folder here (/sys is writable)")


@pytest.mark.parametrize("where", ["a-file", pytest.param("read-only", marks=needs_unwritable)])
def test_predict_annotate_into_a_file_or_a_read_only_folder_is_one_line_before_any_work(
    weights, tmp_path, capsys, where
):
    target = tmp_path / "taken" if where == "a-file" else UNWRITABLE / "annotated"
    if where == "a-file":
        target.write_text("mine")
    cv2.imwrite(str(tmp_path / "face.png"), np.full((48, 48), 128, np.uint8))
    code = predict_main([str(tmp_path / "face.png"), "--model", str(weights), "--annotate", str(target)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: --annotate ") and "\n" not in err
    assert err.endswith(
        "is a file, not a folder; write elsewhere (--annotate DIR)" if where == "a-file" else "(--annotate DIR)"
    )
    assert where != "a-file" or target.read_text() == "mine"


def test_predict_annotate_makes_its_folder_only_for_a_copy(weights, tmp_path, capsys):
    """The --annotate folder is checked before the work and made with the first annotated copy: a run that finds no
    face leaves no empty folder behind."""
    cv2.imwrite(str(tmp_path / "wall.png"), np.full((120, 120), 128, np.uint8))  # no face to detect
    out = tmp_path / "annotated" / "run1"
    assert predict_main([str(tmp_path / "wall.png"), "--model", str(weights), "--annotate", str(out), "--json"]) == 1
    assert "no face detected" in capsys.readouterr().out and not (tmp_path / "annotated").exists()
    args = [str(tmp_path / "wall.png"), "--model", str(weights), "--no-detect", "--annotate", str(out)]
    assert predict_main(args) == 0
    assert [p.name for p in out.iterdir()] == ["wall_annotated.png"]


def test_predict_gives_images_named_alike_each_their_own_annotated_copy(weights, tmp_path, capsys):
    """a/x.png, b/x.png and b/x.jpg used to share one x_annotated.png: the last overwrote the others, unsaid."""
    for i, rel in enumerate(["a/x.png", "b/x.png", "b/x.jpg"]):
        (tmp_path / rel).parent.mkdir(exist_ok=True)
        cv2.imwrite(str(tmp_path / rel), np.full((48, 48), 40 + 80 * i, np.uint8))
    out = tmp_path / "out"
    args = [str(tmp_path / "a"), str(tmp_path / "b"), "--model", str(weights), "--no-detect", "--annotate", str(out)]
    assert predict_main([*args, "--json"]) == 0
    captured = capsys.readouterr()
    rows = json.loads(captured.out)
    copies = [r["annotated"] for r in rows]
    assert sorted(Path(c).name for c in copies) == ["x_annotated-2.png", "x_annotated-3.png", "x_annotated.png"]
    for r in rows:  # each copy is its own image's (the three are grey levels 40, 120, 200)
        assert (
            abs(float(cv2.imread(r["annotated"], cv2.IMREAD_GRAYSCALE)[24, 2]) - float(cv2.imread(r["file"])[24, 2, 0]))
            < 2
        )
    assert "3 annotated copies in" in captured.err
    assert predict_main([*args, "--csv"]) == 0
    table = list(csv.reader(capsys.readouterr().out.splitlines()))
    assert table[0][-1] == "annotated" and sorted(row[-1] for row in table[1:]) == sorted(copies)


def test_predict_keeps_every_prediction_when_an_annotated_copy_cannot_be_written(
    weights, tmp_path, capsys, monkeypatch
):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"f{i}.png"), np.full((48, 48), 60 * i, np.uint8))
    monkeypatch.setattr("emotion.serve.predict.cv2.imwrite", lambda path, img: not path.endswith("f1_annotated.png"))
    args = [str(tmp_path), "--model", str(weights), "--no-detect", "--json", "--annotate", str(tmp_path / "out")]
    code = predict_main(args)
    rows = json.loads(capsys.readouterr().out)
    assert code == 1  # ran, one output failed: reported, not lost
    assert sorted(r["file"] for r in rows if "label" in r) == [str(tmp_path / f"f{i}.png") for i in range(3)]
    (failed,) = [r for r in rows if "error" in r]
    assert failed["file"].endswith("f1.png") and "could not be written" in failed["error"]


@needs_unwritable
def test_export_into_a_read_only_folder_is_one_line(weights, tmp_path):
    res = subprocess.run(
        [sys.executable, "-m", "emotion.export", f"ckpt_path={weights}", "format=safetensors",
         f"out={UNWRITABLE}/m.safetensors"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-2000:]
    errors = [line for line in res.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {UNWRITABLE}") and "write elsewhere (" in errors[0]


@pytest.mark.parametrize("errno_", ["ENOSPC", "EROFS", "EACCES"])
def test_a_full_or_read_only_disk_during_a_run_is_one_line_and_exit_2(errno_, capsys):
    import errno

    from emotion.cli import fail_cleanly

    code = getattr(errno, errno_)
    with pytest.raises(SystemExit) as exc, fail_cleanly():
        raise OSError(code, os.strerror(code), "/runs/x/checkpoints/last.ckpt")
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and "\n" not in err
    assert err.startswith(f"error: /runs/x/checkpoints/last.ckpt: {os.strerror(code)}; ")
    assert ("free disk space" in err) == (errno_ == "ENOSPC")
