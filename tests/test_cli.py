"""Entry points answer ``--help`` and bad config values before torch or Lightning are imported."""

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT

HEAVY = ("torch", "lightning", "torchmetrics", "matplotlib", "tensorboard")
PROBE = """
import json, runpy, sys
sys.argv = [{module!r}, *{args!r}]
code = 0
try:
    runpy.run_module({module!r}, run_name="__main__")
except SystemExit as exc:
    code = exc.code
    if isinstance(code, str):  # what the interpreter would print on its way out
        print(code, file=sys.stderr)
        code = 1
print(json.dumps({{"code": code, "heavy": sorted(m for m in {heavy!r} if m in sys.modules)}}))
"""


def probe(module: str, *args: str) -> tuple[dict, str]:
    code = PROBE.format(module=module, args=list(args), heavy=HEAVY)
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    return json.loads(res.stdout.strip().splitlines()[-1]), res.stderr


@pytest.mark.parametrize(
    "module",
    [
        "emotion.train",
        "emotion.evaluate",
        "emotion.calibrate",
        "emotion.export",
        "emotion.predict",
        "emotion.cam",
        "emotion.songs",
        "emotion.audit",
        "emotion.sweep_report",
    ],
)
def test_help_imports_no_training_stack(module):
    result, _ = probe(module, "--help")
    assert result == {"code": 0, "heavy": []}


@pytest.mark.parametrize(
    "module, args, message",
    [
        ("emotion.train", ["model.optimizer.lr=-1"], "model.optimizer.lr must be >= 0, got -1"),
        ("emotion.train", ["trainer.max_epochs=abc"], "trainer.max_epochs must be a whole number"),
        ("emotion.train", ["model.optimizer.weight_decay=x"], "model.optimizer.weight_decay must be >= 0, got 'x'"),
        ("emotion.train", ["data.root=/nowhere/fer2013"], "FER2013 not found. Tried: /nowhere/fer2013, kagglehub"),
        ("emotion.evaluate", ["pretrained=true", "data.root=/nowhere/fer2013"], "FER2013 not found"),
        ("emotion.evaluate", ["pretrained=true", "split=bogus"], "split must be train, val or test"),
        ("emotion.evaluate", ["ckpt_path=/nonexistent.ckpt"], "/nonexistent.ckpt"),
        ("emotion.export", ["format=onnx"], "give one model: ckpt_path=PATH"),
        ("emotion.export", ["pretrained=true"], "give out=PATH"),
        ("emotion.train", ["trainer.max_epochs=0"], "trainer.max_epochs must be >= 1 (or -1: no limit), got 0"),
        ("emotion.train", ["data.batch_size=32.5"], "data.batch_size must be a whole number >= 1, got 32.5"),
        ("emotion.evaluate", ["pretrained=true", "ckpt_path=/x.ckpt"], "two models given: pretrained=True"),
        ("emotion.train", ["experiment=baseline", "data.root=pyproject.toml"], "is a file, not a folder"),
        ("emotion.train", ["experiment=baseline", "data.root="], "data.root is empty"),
        ("emotion.evaluate", ["pretrained=true", "data.root=/tmp/données_ü"], "characters Hydra reads only inside"),
        (
            "emotion.export",
            ["pretrained=true", "out=/tmp/modèle.onnx"],
            "quote the value, e.g. 'out=\"/tmp/modèle.onnx\"'",
        ),
        # a config group's option without a file: Hydra's own answer is many lines and exit status 1
        (
            "emotion.train",
            ["experiment=recpie"],
            "experiment=recpie: there is no conf/experiment/recpie.yaml; choose from baseline, best, demo, fast, "
            "field, recipe, sota",
        ),
        ("emotion.train", ["-m", "experiment=recipe,recpie"], "experiment=recpie: there is no"),  # a sweep's
        ("emotion.train", ["callbacks=[default,emma]"], "callbacks=emma: there is no conf/callbacks/emma.yaml"),
        ("emotion.train", ["model/net=vgg"], "model/net=vgg: there is no conf/model/net/vgg.yaml; choose from emotion"),
        ("emotion.evaluate", ["data=fer"], "data=fer: there is no conf/data/fer.yaml; choose from fer2013, synthetic"),
    ],
)
def test_a_bad_value_is_one_line_before_any_heavy_import(module, args, message, tmp_path):
    result, stderr = probe(module, *args, f"paths.root_dir={tmp_path}")
    assert result == {"code": 2, "heavy": []}  # emotion.errors.EXIT_USAGE, as argparse and the serving apps
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], stderr[-2000:]
    assert stderr.count(message) == 1  # printed once (not again by a log handler)
    assert "Traceback" not in stderr


def test_every_console_script_points_at_a_command_and_runs_as_python_m_does():
    import importlib
    import tomllib
    from pathlib import Path

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert {"emotion-train", "emotion-evaluate", "emotion-predict", "emotion-cam", "emotion-songs"} <= set(scripts)
    for name, target in scripts.items():
        module, attr = target.split(":")
        assert callable(getattr(importlib.import_module(module), attr)), name
    bin_dir = Path(sys.executable).parent
    res = subprocess.run([bin_dir / "emotion-train", "data.root=/x/ü"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and res.stderr.startswith("error: cannot read the override data.root=/x/ü")
    res = subprocess.run([bin_dir / "emotion-predict", "--help"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and "--detector" in res.stdout


@pytest.mark.parametrize("module", ["emotion.train", "emotion.evaluate", "emotion.export", "emotion.calibrate"])
def test_the_config_commands_of_an_installed_package_without_conf_say_to_use_a_clone(tmp_path, module):
    """A wheel carries emotion/ (serving) but not the project's conf/: Hydra's own words would name a folder."""
    import shutil

    site = tmp_path / "site-packages"
    shutil.copytree(ROOT / "emotion", site / "emotion", ignore=shutil.ignore_patterns("__pycache__", "weights"))
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(site)}
    res = subprocess.run(
        [sys.executable, "-m", module, "experiment=demo" if module == "emotion.train" else "pretrained=true"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert f"python -m {module} needs the project's configs ({tmp_path / 'site-packages' / 'conf'}/" in res.stderr
    assert "run it from a clone of the project (make install)" in res.stderr
