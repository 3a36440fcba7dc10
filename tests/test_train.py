"""End-to-end: Hydra composition → Lightning fit/validate/test → metrics.json, on generated faces."""

import json
import logging
import os
import re
import shutil
import subprocess
import sys

import pytest
import torch

from emotion.errors import UserError
from emotion.evaluate import evaluate
from emotion.train import train
from tests.conftest import ROOT, TINY, make_cfg


def test_fast_dev_run_composes_and_trains(tmp_path):
    cfg = make_cfg(tmp_path, [*TINY, "trainer.fast_dev_run=true"])
    metrics = train(cfg)
    assert "test/acc" in metrics and "val/acc" in metrics


@pytest.mark.parametrize(
    "experiment, extra",
    [
        ("recipe", []),
        ("recipe", ["model.distill.precompute=true"]),  # the one-cycle schedule builds a loader early: targets first
        ("best", []),
        ("fast", []),
        ("sota", ["trainer.accelerator=cpu", "trainer.precision=32-true", "data.pin_memory=false"]),
    ],
)
def test_recipe_best_fast_and_sota_experiments_train_on_cpu(tmp_path, experiment, extra):
    """The configs compose, run a step each and write checkpoints that load with ``weights_only=True`` (no Hydra
    container may reach them); sota: SGD-Nesterov + ReduceLROnPlateau on val/acc, full width; fast: 40-px faces,
    recorded in the model's spec; recipe: EMA of the weights."""
    cfg = make_cfg(
        tmp_path,
        [f"experiment={experiment}", "data=synthetic", *TINY[1:], *extra, "trainer.limit_train_batches=2"],
    )
    metrics = train(cfg)
    assert "val/acc" in metrics
    ckpt = torch.load(next((tmp_path / "run" / "checkpoints").glob("last.ckpt")), weights_only=True)
    if experiment == "recipe":
        assert ckpt["emotion_model"]["arch"] == "emotion_cnn"
        assert "averaging_state" in ckpt  # the recipe trains with an average of the weights (callbacks=ema)
    else:
        assert ckpt["emotion_model"]["arch"] == "emotion_vgg"
        widths = {"sota": [64, 128, 256, 512], "best": [48, 96, 192, 384], "fast": [32, 64, 128, 256]}[experiment]
        assert ckpt["emotion_model"]["arch_kwargs"]["widths"] == widths
        assert ckpt["emotion_model"]["arch_kwargs"]["stem_pool"] == 1  # no pooling before the first convolution
    assert ckpt["emotion_model"]["input_size"] == (40 if experiment == "fast" else 48)
    assert not any(k.startswith("sharpness") for k in ckpt["emotion_model"])


def test_bf16_mixed_precision_trains_on_cpu_and_warns_where_it_is_emulated(tmp_path, monkeypatch, caplog):
    """bf16-mixed (~1.8x faster than float32 on CPUs with AVX512-BF16/AMX) trains to finite metrics; on a CPU without
    native bf16 the run says it would be faster in float32."""
    from emotion.training import runs

    monkeypatch.setattr(runs, "cpu_has_native_bf16", lambda: False)
    cfg = make_cfg(tmp_path, [*TINY, "trainer.fast_dev_run=true", "trainer.precision=bf16-mixed"])
    with caplog.at_level("WARNING", logger="emotion.training.runs"):
        metrics = train(cfg)
    assert metrics and all(torch.isfinite(torch.tensor(v)) for v in metrics.values())
    assert "trainer.precision=32-true" in caplog.text
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["precision"] == "bf16-mixed"  # as it ran
    caplog.clear()
    monkeypatch.setattr(runs, "cpu_has_native_bf16", lambda: True)
    runs.check_precision(cfg.trainer)
    assert "emulated" not in caplog.text


@pytest.mark.parametrize("native", [True, False])
@pytest.mark.parametrize("experiment", ["recipe", "best", "field"])
def test_bf16_experiments_train_in_bf16_only_where_it_is_native(tmp_path, monkeypatch, experiment, native):
    """The experiments that want bf16 get it where the CPU computes it natively and float32 elsewhere (emulated bf16
    trained ~11x slower than float32 on an AVX2 CPU); the trainer the run builds is given that precision."""
    import hydra

    from emotion.training import precision

    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)
    cfg = make_cfg(tmp_path, [f"experiment={experiment}"])
    trainer = hydra.utils.instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
    assert trainer.precision == ("bf16-mixed" if native else "32-true")
    explicit = make_cfg(tmp_path, [f"experiment={experiment}", "trainer.precision=bf16-mixed"])
    assert explicit.trainer.precision == "bf16-mixed"  # a precision given on the command line is kept as given


def test_gpu_trainer_asks_for_bf16_unless_the_gpu_lacks_it(tmp_path, monkeypatch):
    from emotion.training import precision

    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    cfg = make_cfg(tmp_path, ["trainer=gpu"])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert cfg.trainer.precision == "bf16-mixed"  # an A100 or H100
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: False)
    assert cfg.trainer.precision == "32-true"  # a V100 or T4
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert precision.bf16_where_native("auto") == "32-true"  # auto without a GPU is this CPU, emulating bf16


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """The real `experiment=demo` (smaller set, same recipe), trained once for the tests below."""
    tmp = tmp_path_factory.mktemp("demo")
    cfg = make_cfg(tmp, ["experiment=demo", "trainer.enable_progress_bar=false", "~callbacks.progress_bar"])
    metrics = train(cfg)
    return tmp, cfg, metrics


def test_demo_learns_well_above_chance(demo_run):
    tmp, _, metrics = demo_run
    # 7 balanced classes: chance is 14%. The demo must really learn its generated faces.
    assert metrics["test/acc"] > 0.6
    report = json.loads((tmp / "run" / "metrics.json").read_text())
    assert report["class_names"] == ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    assert report["split_protocol"]["test"] == "PrivateTest (420)"
    assert report["precision"] == "32-true"
    assert [h["precision"] for h in report["history"]] == ["32-true"] * 4  # each epoch's
    assert report["epochs_by_precision"] == {"32-true": 4}
    hw = report["hardware"]  # the instruction set decides the speed: "AMD EPYC" names several machines
    assert hw["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert hw["cpu_native_bf16"] == bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    assert hw["cpu_amx_bf16"] == torch.cpu.get_capabilities()["amx_bf16"]
    assert [h["epoch"] for h in report["history"]] == [1, 2, 3, 4]
    assert report["history"][-1]["val/acc"] > report["history"][0]["val/acc"]
    for name in ("confusion_val.png", "confusion_test.png", "curves.png"):
        assert (tmp / "run" / name).stat().st_size > 1000
    assert list((tmp / "run" / "tensorboard").glob("events.out.tfevents.*"))


def test_checkpoint_carries_class_names_and_loads_safely(demo_run):
    tmp, _, _ = demo_run
    ckpt = torch.load(tmp / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["emotion_model"]["class_names"][6] == "neutral"
    assert ckpt["emotion_model"]["mean"] > 0


def test_evaluate_reproduces_the_test_metrics_of_train(demo_run, tmp_path):
    tmp, _, metrics = demo_run
    report = json.loads((tmp / "run" / "metrics.json").read_text())
    cfg = make_cfg(
        tmp_path,
        [f"ckpt_path={report['best_checkpoint']}", f"data.root={tmp / 'data' / 'synthetic'}"],
        config_name="eval",
    )
    result = evaluate(cfg)
    assert result["accuracy"] == pytest.approx(metrics["test/acc"], abs=1e-6)
    assert result["macro_f1"] == pytest.approx(metrics["test/macro_f1"], abs=1e-6)
    assert json.loads((tmp_path / "run" / "eval.json").read_text())["n_images"] == 420


def test_evaluate_on_a_folder_with_only_test(demo_run, tmp_path):
    tmp, _, _ = demo_run
    report = json.loads((tmp / "run" / "metrics.json").read_text())
    only_test = tmp_path / "only"
    (only_test / "test").mkdir(parents=True)
    for d in (tmp / "data" / "synthetic" / "test").iterdir():
        (only_test / "test" / d.name).symlink_to(d)
    for tta in ("none", "flip", "tencrop"):
        cfg = make_cfg(
            tmp_path,
            [f"ckpt_path={report['best_checkpoint']}", f"data.root={only_test}", f"tta={tta}"],
            config_name="eval",
        )
        result = evaluate(cfg)
        assert result["tta"] == tta and result["n_images"] == 420  # PrivateTest files of test/
        assert result["accuracy"] > 0.6


@pytest.mark.slow  # a 100-face training (test_model.py guards the distillation loss and its settings by default)
def test_distillation_alone_teaches_the_student(demo_run, tmp_path):
    """With ``distill.alpha=1`` the labels do not enter the loss: a student that beats chance learned it from the
    teacher (the demo model). The teacher stays out of the student's checkpoint."""
    tmp, _, _ = demo_run
    teacher = json.loads((tmp / "run" / "metrics.json").read_text())["best_checkpoint"]
    cfg = make_cfg(
        tmp_path,
        [
            "experiment=demo",
            "data.synthesize.n_train=100",
            "trainer.enable_progress_bar=false",
            "~callbacks.progress_bar",
            f"model.distill.teacher={teacher}",
            "model.distill.alpha=1.0",
            "model.loss.label_smoothing=0",
        ],
    )
    metrics = train(cfg)
    assert metrics["test/acc"] > 0.3  # chance: 1/7 (measured here: 0.448)
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert all(k.startswith("net.") for k in ckpt["state_dict"])
    assert ckpt["hyper_parameters"]["distill"]["teacher"] == teacher
    history = json.loads((tmp_path / "run" / "metrics.json").read_text())["history"]
    assert history[-1]["train/distill_loss"] < history[0]["train/distill_loss"]


def run_cli(*args: str, cwd=ROOT, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def test_two_job_multirun(tmp_path):
    tiny = [o for o in TINY if not o.startswith("~")] + ["callbacks=none"]
    res = run_cli("-m", "emotion.train", "-m", *tiny, f"paths.root_dir={tmp_path}", "model.optimizer.lr=1e-3,3e-3")
    assert res.returncode == 0, res.stderr[-3000:]
    runs = sorted(tmp_path.glob("logs/train/multiruns/*/[0-9]"))
    assert len(runs) == 2
    reports = [json.loads((r / "metrics.json").read_text()) for r in runs]
    assert {r["overrides"][-1] for r in reports} == {"model.optimizer.lr=0.001", "model.optimizer.lr=0.003"}
    # the README's sweep example: the learning rate must move the run (experiment=demo is one-cycle)
    assert reports[0]["metrics"]["val/loss"] != reports[1]["metrics"]["val/loss"]


def test_a_training_run_prints_no_library_noise(tmp_path):
    """No product tips, no library deprecation notes, and a model summary with the real FLOPs."""
    tiny = [o for o in TINY if o != "~callbacks.model_summary"]
    res = run_cli("-m", "emotion.train", *tiny, f"paths.root_dir={tmp_path}")
    assert res.returncode == 0, res.stderr[-3000:]
    out = res.stdout + res.stderr
    for noise in ("Tip:", "LeafSpec", "already configured with model summary", "Total FLOPs: 0"):
        assert noise not in out
    assert "Total FLOPs: 446 M" in out  # two 48x48 faces through EmotionCNN, forward
    assert out.count("Seed set to 42") == 1  # Lightning's lines once, through Hydra's handlers (and the log file)
    assert not [line for line in out.splitlines() if line.startswith("INFO: ")]
    assert "Seed set to 42" in next((tmp_path / "logs").rglob("train.log")).read_text()


#: cases that fail only once torch is imported (~6 s a process) run in make test-slow; ranges and model files
#: fail before that (emotion.cli.check_config), in about a second
SLOW_PROCESS = pytest.mark.slow


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.batch_size=0", "data.batch_size must be a whole number >= 1, got 0"),
        ("model.net.dropout_fc=1.5", "dropout_fc must be in [0, 1)"),
        ("model.loss.label_smoothing=-1", "model.loss.label_smoothing must be in [0, 1)"),
        ("model.distill.alpha=2", "model.distill.alpha must be in [0, 1]"),
        ("model.distill.drop_labels_below=2", "model.distill.drop_labels_below must be in [0, 1]"),
        ("data.augment.erasing_p=3", "erasing_p must be in [0, 1]"),
        ("model.distill.teacher=/nowhere/teacher.ckpt", "'/nowhere/teacher.ckpt' is neither a model file nor"),
        ("model.init_from=/nowhere/start.ckpt", "model.init_from: '/nowhere/start.ckpt' is neither a model file"),
        ("model.distill.teacher=[emotion_vgg,/nowhere/t.ckpt]", "teacher: '/nowhere/t.ckpt' is neither a model file"),
        ("model.init_from=[emotion_vgg,emotion_cnn]", "model.init_from: one model, not a list"),
        ("data.augment.blur_p=2", "augment.blur_p must be in [0, 1]"),
        ("seed=abc", "seed must be a whole number in [0, 4294967295], got 'abc'; e.g. seed=42"),  # was a traceback
        ("seed=-1", "seed must be a whole number in [0, 4294967295], got -1"),  # Lightning warned and used 0
    ],
)
def test_invalid_config_values_fail_before_training_with_a_clear_message(tmp_path, override, message):
    res = run_cli("-m", "emotion.train", *TINY, f"paths.root_dir={tmp_path}", override, timeout=120)
    assert res.returncode == 2
    assert res.stderr.count(message) == 1
    assert "Traceback" not in res.stderr
    assert not list(tmp_path.glob("logs/train/runs/*/checkpoints/*.ckpt"))


@pytest.mark.parametrize(
    ("overrides", "first_words"),
    [
        (["data.bach_size=8"], "data.bach_size: no such setting; did you mean data.batch_size? (data's settings: "),
        (["model.schedulr.name=x"], "model.schedulr: no such setting; did you mean model.scheduler? (model's"),
        (["-m", "data.bach_size=8,16"], "data.bach_size: no such setting; did you mean data.batch_size?"),  # a sweep
        (["tta=flip"], "tta: no such setting (the top-level settings: task_name, "),  # evaluate's, not train's
    ],
)
def test_a_setting_the_config_lacks_is_one_line_with_the_nearest_name(tmp_path, overrides, first_words):
    """Hydra answered with six lines, exit status 1, and the advice to add the key with +, which would turn a typo
    into a setting nothing reads."""
    res = run_cli("-m", "emotion.train", *TINY, f"paths.root_dir={tmp_path}", *overrides, timeout=120)
    assert res.returncode == 2 and res.stderr.startswith(f"error: {first_words}"), res.stderr[-2000:]
    assert len(res.stderr.strip().splitlines()) == 1 and "+" in res.stderr  # how to add one on purpose
    assert not (tmp_path / "logs").exists()  # refused before Hydra made a run or sweep folder


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("+data.batch_size=8", "Could not append to config. An item is already at 'data.batch_size'. Either remove + "),
        ("~data.nosuch", "Could not delete from config. 'data.nosuch' does not exist."),
    ],
)
def test_hydras_other_composition_errors_are_one_line_and_exit_2(tmp_path, override, message):
    res = run_cli("-m", "emotion.train", *TINY, f"paths.root_dir={tmp_path}", override, timeout=120)
    assert res.returncode == 2 and res.stderr.startswith(f"error: {message}"), res.stderr[-2000:]
    assert len(res.stderr.strip().splitlines()) == 1 and not (tmp_path / "logs").exists()


def test_missing_dataset_names_paths_kaggle_and_demo(tmp_path):
    res = run_cli("-m", "emotion.train", f"paths.root_dir={tmp_path}", f"data.root={tmp_path}/nowhere", timeout=120)
    assert res.returncode != 0
    err = res.stderr
    assert f"{tmp_path}/nowhere" in err and "msambare/fer2013" in err and "experiment=demo" in err
    assert "train/<class>" in err and "Traceback" not in err


def test_last_ckpt_is_written_every_epoch_even_without_improvement(tmp_path):
    # lr=0: val/acc never improves after epoch 1, so only last.ckpt can hold the latest epoch.
    cfg = make_cfg(tmp_path, [*TINY, "trainer.max_epochs=3", "model.optimizer.lr=0", "model.scheduler=null"])
    train(cfg)
    ckpts = tmp_path / "run" / "checkpoints"
    assert torch.load(ckpts / "last.ckpt", map_location="cpu", weights_only=True)["epoch"] == 2
    report = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert report["best_checkpoint"].endswith(".ckpt") and "epoch000" in report["best_checkpoint"]
    assert sorted(p.name for p in ckpts.iterdir()) == ["epoch000-acc0.1429.ckpt", "last.ckpt"]
    # A fresh start in the same run directory would mix its checkpoints with these: refused, naming the way out.
    with pytest.raises(UserError, match="ckpt_path=last.*run_name"):
        train(cfg)
    assert sorted(p.name for p in ckpts.iterdir()) == ["epoch000-acc0.1429.ckpt", "last.ckpt"]


def test_resuming_a_run_that_never_ran_is_refused_not_started_fresh(tmp_path):
    cfg = make_cfg(tmp_path, [*TINY, "ckpt_path=last"])
    with pytest.raises(UserError, match="ckpt_path=last: nothing to resume under run_name=run .*last.ckpt does not"):
        train(cfg)
    assert not (tmp_path / "run" / "checkpoints").exists()  # nothing was trained


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("trainer.max_epochs=abc", "trainer.max_epochs must be a whole number, got 'abc'"),
        ("trainer.max_epochs=-5", "trainer.max_epochs must be >= 1"),
        ("model.optimizer.lr=-1", "model.optimizer.lr must be >= 0, got -1; e.g. model.optimizer.lr=1e-3"),
        ("model.optimizer.weight_decay=-0.1", "model.optimizer.weight_decay must be >= 0, got -0.1"),
        ("+model.optimizer.betas=[2,0.9]", "model.optimizer: Invalid beta parameter"),  # torch's check, still early
    ],
)
def test_bad_trainer_and_optimizer_values_are_user_errors_raised_before_any_data(tmp_path, override, message):
    """User errors (fail_cleanly prints them as one line, as the CLI test above shows), raised before the data is
    generated or read."""

    with pytest.raises(UserError, match=re.escape(message)):
        train(make_cfg(tmp_path, [*TINY, override]))
    assert not (tmp_path / "data").exists()


def test_an_unknown_class_folder_is_a_user_error_naming_the_folder(folder_data, tmp_path):
    from emotion.errors import UserError

    shutil.copytree(folder_data / "train" / "happy", folder_data / "train" / "contempt")
    tiny = [o for o in TINY if not o.startswith(("data.synth", "experiment="))]  # the default data=fer2013
    cfg = make_cfg(tmp_path, [*tiny, f"data.root={folder_data}", "data.cache_dir=null"])
    with pytest.raises(UserError, match=r"train/contempt: unknown emotion class 'contempt'.*Rename or remove"):
        train(cfg)


def test_hyperparameters_are_logged_at_fit_start_without_plumbing(demo_run):
    """Every run is in TensorBoard's HPARAMS tab from its start (hparams.yaml + hp/ metrics filled per epoch)."""
    import yaml
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tmp, _, _ = demo_run
    hparams = yaml.safe_load(next((tmp / "run" / "tensorboard").rglob("hparams.yaml")).read_text())
    assert hparams["model.optimizer.lr"] == 3e-3 and hparams["model.scheduler.class"] == "OneCycleLR"
    assert not any("_target_" in k or k.startswith(("paths.", "hydra.")) for k in hparams)
    assert not any(isinstance(v, str) and "/" in v for v in hparams.values())  # no folders
    events = sorted((tmp / "run" / "tensorboard").rglob("events.out.tfevents.*"))
    tags = set()
    for f in events:
        acc = EventAccumulator(str(f))
        acc.Reload()
        tags |= {t for t in acc.Tags()["scalars"] if t.startswith("hp/")}
    assert {"hp/val/acc", "hp/test/acc"} <= tags


def test_init_from_starts_the_training_from_a_models_weights(demo_run, tmp_path, caplog):
    """Fine-tuning: with lr=0 a run that starts from the demo model's checkpoint still holds exactly its weights
    (and scores what it scores), also with another input scaling; without init_from it holds its own random start."""
    tmp, _, _ = demo_run
    source = json.loads((tmp / "run" / "metrics.json").read_text())["best_checkpoint"]
    frozen = [*TINY, "model.optimizer.lr=0", "model.scheduler=null"]
    with caplog.at_level(logging.INFO, logger="emotion.models.module"):
        train(make_cfg(tmp_path / "a", [*frozen, f"model.init_from={source}"]))
    assert f"model.init_from: starting from the weights of {source}" in caplog.text  # the run's log says so
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="emotion.models.module"):
        train(make_cfg(tmp_path / "b", frozen))
    assert "model.init_from" not in caplog.text
    weights = lambda run: torch.load(run / "run" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]  # noqa: E731
    start = torch.load(source, weights_only=True)["state_dict"]
    tuned, fresh = weights(tmp_path / "a"), weights(tmp_path / "b")
    assert all(torch.equal(tuned[k], start[k]) for k in start if "running" not in k and "num_batches" not in k)
    assert not torch.equal(fresh["net.fc2.weight"], start["net.fc2.weight"])
    # a fine-tune may change how inputs are scaled (a resume may not: tests/test_checkpoint.py)
    train(make_cfg(tmp_path / "c", [*frozen, f"model.init_from={source}", "model.net.input_norm=per_face"]))
    assert torch.equal(weights(tmp_path / "c")["net.fc2.weight"], start["net.fc2.weight"])
    with pytest.raises(UserError, match="do not fit the configured network"):
        make_cfg_and_train(tmp_path / "d", [*frozen, "model.init_from=emotion_vgg", "model=emotion_vgg"])


def test_a_resume_that_changes_the_schedules_length_is_refused(tmp_path):
    """A one-cycle schedule resumed with more epochs used to crash at its old end ("Tried to step N times")."""
    train(make_cfg(tmp_path, TINY))
    with pytest.raises(UserError, match=r"schedule spans \d+ steps, .*trainer.max_epochs.*model.init_from") as err:
        train(make_cfg(tmp_path, [*TINY, "trainer.max_epochs=2", "ckpt_path=last"]))
    saved, asked = map(int, re.search(r"spans (\d+) steps, this run's (\d+)", str(err.value)).groups())
    assert asked == 2 * saved  # twice the epochs
    train(make_cfg(tmp_path, [*TINY, "ckpt_path=last"]))  # the same length resumes


def test_a_resume_with_other_settings_says_which_cannot_take_effect_and_the_report_keeps_them(tmp_path, caplog):
    """A resume restores the optimizer's state: a new learning rate used to be overridden without a word."""
    base = [*TINY, "model.scheduler=null", "logger=csv"]
    train(make_cfg(tmp_path, base))
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    changed = ["trainer.max_epochs=2", "model.optimizer.lr=0.01", "model.loss.label_smoothing=0.1", "ckpt_path=last"]
    with caplog.at_level("WARNING", logger="emotion.training.callbacks"):
        train(make_cfg(tmp_path, [*base, *changed]))
    assert "(model.optimizer.lr 0.003 -> 0.01); they do NOT take effect" in caplog.text
    assert "model.init_from=" in caplog.text
    assert "from epoch 2 on: model.loss.label_smoothing 0.0 -> 0.1, trainer.max_epochs 1 -> 2" in caplog.text
    state = torch.load(last, weights_only=True)
    assert state["optimizer_states"][0]["param_groups"][0]["lr"] == 0.003  # as the warning says: the run's own
    settings = {
        "model.loss.label_smoothing": [0.0, 0.1],
        "model.optimizer.lr": [0.003, 0.01],
        "trainer.max_epochs": [1, 2],
    }
    expected = [{"from_epoch": 2, "settings": settings}]
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["resume_changes"] == expected
    caplog.clear()
    with caplog.at_level("WARNING", logger="emotion.training.callbacks"):  # the same settings again: nothing to say
        train(make_cfg(tmp_path, [*base, *changed[1:3], "trainer.max_epochs=3", "ckpt_path=last"]))
    assert "model.optimizer.lr" not in caplog.text and "trainer.max_epochs 2 -> 3" in caplog.text
    report = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert [c["from_epoch"] for c in report["resume_changes"]] == [2, 3]  # both resumes, kept across them


def make_cfg_and_train(tmp_path, overrides):
    return train(make_cfg(tmp_path, overrides))


def _pickle_payload(path):
    import pickle

    class Payload:
        def __reduce__(self):
            return (print, ("this ran while loading",))

    torch.save({"state_dict": {}, "epoch": 0, "optimizer_states": [], "x": Payload()}, path, pickle_module=pickle)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        pytest.param(lambda p: p.write_bytes(os.urandom(4096)), "is not a PyTorch checkpoint", marks=SLOW_PROCESS),
        (_pickle_payload, "contains pickled Python objects"),
        pytest.param(
            lambda p: torch.save({"weights": torch.zeros(2)}, p),
            "holds no training state to resume",
            marks=SLOW_PROCESS,
        ),
    ],
    ids=["random-bytes", "pickle-payload", "not-a-training-checkpoint"],
)
def test_resuming_from_a_bad_checkpoint_is_one_line_before_lightning_opens_it(tmp_path, make, message):
    bad = tmp_path / "bad.ckpt"
    make(bad)
    res = run_cli("-m", "emotion.train", *TINY, f"paths.root_dir={tmp_path}", f"ckpt_path={bad}", timeout=120)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-2000:]
    errors = [line for line in res.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0] and "model.init_from" in errors[0]
    assert "weights_only=False" not in res.stderr and "this ran while loading" not in res.stdout + res.stderr


def lock_holder(run_dir) -> subprocess.Popen:
    """Another process that holds ``run_dir``'s run lock (as a training does) until it is killed."""
    holder = subprocess.Popen(
        [sys.executable, "-c", f"from emotion.run_lock import hold; hold({str(run_dir)!r}); "
         "print('held', flush=True); import time; time.sleep(120)"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_second_run_with_the_same_run_name_is_refused_until_the_first_ends_even_by_a_crash(tmp_path):
    """The holder takes the run folder's lock as a training does and is then killed (SIGKILL): while it lives, a
    training with that run_name is refused before Hydra writes anything there; after, the lock is free."""
    run_dir = tmp_path / "logs" / "train" / "runs" / "shared"
    holder = lock_holder(run_dir)
    try:
        args = ("-m", "emotion.train", *TINY, f"paths.root_dir={tmp_path}", "run_name=shared")
        res = run_cli(*args, timeout=120)
        assert res.returncode == 2 and "Traceback" not in res.stderr
        assert res.stderr.strip().splitlines() == [
            f"error: {run_dir} is in use by a run that is still going (pid {holder.pid}); wait for it to finish, "
            "or give this one another run_name"
        ]
        assert sorted(p.name for p in run_dir.iterdir()) == [".lock"]  # nothing of the refused run's
    finally:
        holder.kill()
        holder.wait()
    taken = subprocess.run(  # the killed holder's lock is gone: the folder can be taken at once
        [sys.executable, "-c", f"from emotion.run_lock import hold; hold({str(run_dir)!r}); print('held')"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert taken.stdout.strip() == "held", taken.stderr[-2000:]


def test_the_demo_reproduces_its_recorded_figure(demo_run):
    """One source for the demo's number: experiments/demo/metrics.json. The README points there (and quotes no
    figure of its own), and the suite's demo training (the same recipe) lands within the spread between CPUs."""
    _, _, metrics = demo_run
    recorded = json.loads((ROOT / "experiments" / "demo" / "metrics.json").read_text())["metrics"]["test/acc"]
    readme = (ROOT / "README.md").read_text()
    assert (
        "experiments/demo/" in readme and f"{recorded:.3f}"[:4] not in readme.split("## Install")[1].split("## Data")[0]
    )
    assert abs(metrics["test/acc"] - recorded) <= 0.06


def test_the_other_ranks_of_a_ddp_training_share_their_first_ranks_lock(tmp_path, monkeypatch):
    """Lightning starts ranks 1… of a DDP run as copies of the command: they must not be refused as a second run."""
    from emotion.run_lock import hold

    holder = lock_holder(tmp_path)
    try:
        monkeypatch.setenv("LOCAL_RANK", "1")
        hold(tmp_path)  # rank 1: no refusal
        monkeypatch.setenv("LOCAL_RANK", "0")
        with pytest.raises(UserError, match="is in use by a run that is still going"):
            hold(tmp_path)
    finally:
        holder.kill()
        holder.wait()
