"""Smoke test of the throughput benchmark: it runs end to end and prints every row (figures are not checked)."""

import json
import subprocess
import sys

import pytest
import torch

from tests.conftest import ROOT

pytestmark = pytest.mark.slow  # ~1 min: the benchmark's own run is `make bench`

ROWS = [
    "training, ours (img/s)",
    "training, ours, bf16-mixed (img/s;",
    "training, naive ImageFolder+PIL+2 workers (img/s)",
    "speed-up vs naive",
    "FLOPs per training image (fwd+bwd)",
    "hardware bound (img/s)",
    "ours as % of bound",
    "recipe teacher (emotion_vgg_v8_v9 + emotion_vgg), batch 64,",
    "folded vs kept: largest probability difference, same top class",
    "recipe training step with that teacher: batch norms kept / folded (img/s)",
    "reuse_outputs: the run keeping the teacher's outputs / later runs reading them (img/s)",
    "cached load (s)",
    "peak RSS of a full-data training process (MB)",
    "inference onnxruntime, batch 1 (ms/face)",
    "inference pt2, batch 32 (ms/face)",
    "inference eager, batch 1 (ms/face)",
    "inference onnxruntime_int8, batch 1 (ms/face)",
    "onnxruntime_int8 accuracy on the",
    "webcam 640x480, 60-px face: FPS / face found, ours (haar) vs seed",
    "webcam 640x480, 240-px face: FPS / face found, ours (haar) vs seed",
    "webcam 640x480, 100-px, 30° face tilted: FPS / face found, ours (haar) vs seed",
    "webcam, ours: lowest FPS / lowest share found over the sizes",
    "webcam on photograph text: frames with a false box, no face / 120-px face; found",
    "webcam on 2 photographs: false-box frames, no face / face; found; FPS",
    "start-up: python -m train --help (s)",
    "start-up: python -m evaluate --help (s)",
]


def run_bench(tmp_path, *args: str) -> tuple[str, dict]:
    """``bench.py --quick`` on generated faces (no FER2013 under tmp_path): its stdout and its JSON figures."""
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [
            sys.executable,
            "experiments/throughput/bench.py",
            "--quick",
            "--data",
            str(tmp_path / "none"),
            "--out",
            str(out),
            *args,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "using generated faces" in proc.stdout
    return proc.stdout, json.loads(out.read_text())


def run_folders() -> set[str]:
    runs = ROOT / "logs" / "train" / "runs"
    return {p.name for p in runs.iterdir()} if runs.is_dir() else set()


def test_benchmark_runs_and_prints_every_row(tmp_path):
    before = run_folders()
    stdout, res = run_bench(tmp_path)
    assert run_folders() == before  # the start-up rows' failing command logs into a temporary folder
    for row in ROWS:
        assert row in stdout, row
    t = res["training"]
    assert t["ours_images_per_s"] > 0 and t["naive_images_per_s"] > 0 and t["ours_bf16_images_per_s"] > 0
    assert t["bf16_speedup"] == t["ours_bf16_images_per_s"] / t["ours_images_per_s"]
    assert 5e8 < t["flops_per_image_fwd_bwd"] < 1e9  # EmotionCNN: ~0.67 GFLOP per training image
    assert res["memory"]["training_peak_rss_mb"] > 100
    teacher = res["teacher"]
    assert teacher["kept_ms_per_batch"] > 0 and teacher["folded_ms_per_batch"] > 0
    assert teacher["max_prob_difference"] < 0.05 and teacher["same_top_class"] >= 0.9
    assert all(v > 0 for v in teacher["recipe_step_images_per_s"].values())
    assert 0 <= res["inference"]["onnxruntime_int8"]["test_accuracy"] <= 1
    sizes = res["webcam"]["face_sizes"]
    assert set(sizes) == {"60", "80", "100", "130", "160", "240", "360", "440"}
    assert all(r["ours_found"] > 0.5 and r["haar_found"] > 0.5 and r["seed_found"] > 0.5 for r in sizes.values())
    assert set(res["webcam"]["tilted"]) == {"100@30", "240@30"}
    assert all(r["ours_found"] > 0.5 for r in res["webcam"]["tilted"].values())  # YuNet finds tilted faces
    textures = res["textures"]
    assert set(textures["photos"]) == {"text", "chelsea"} and textures["found"] > 0.5
    assert all(0 <= r["empty_false"] <= 1 and r["face_fps"] > 0 for r in textures["photos"].values())
    assert all(0 < s < 60 for s in res["startup"].values())
    machine = res["machine"]  # the facts a run report records, so a bench and a training compare
    assert machine["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert machine["cpu_amx_bf16"] == torch.cpu.get_capabilities()["amx_bf16"]
    bf16 = "native" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "emulated"
    assert f"{machine['cpu_capability']}, bf16 {bf16}" in stdout


def test_benchmark_inference_rows_can_measure_another_shipped_model(tmp_path):
    stdout, res = run_bench(tmp_path, "--only", "inference", "--model", "emotion_vgg")
    assert "inference/webcam model emotion_vgg" in stdout
    assert res["model"] == "emotion_vgg" and "training" not in res
    assert res["inference"]["onnxruntime"]["batch1_ms_per_face"] > 0
