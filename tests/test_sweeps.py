"""Sweeps: a grid multirun with a failing job that does not stop the sweep, Optuna TPE, and the report table."""

import json

import optuna
import pytest
import yaml

from emotion.training.sweep_report import main as report_main
from tests.conftest import TINY
from tests.test_train import run_cli

QUIET = [o for o in TINY if not o.startswith("~")] + ["callbacks=none", "logger=csv"]


@pytest.mark.slow  # a sweep of trainings (test_train.py::test_two_job_multirun and test_study.py guard sweeps)
def test_grid_with_a_diverging_job_records_it_and_goes_on(tmp_path, capsys):
    res = run_cli(
        "-m",
        "emotion.train",
        "-m",
        *QUIET,
        f"paths.root_dir={tmp_path}",
        "run_name=grid",
        "model.optimizer.lr=1e-3,1e6",
        "model.scheduler=null",
    )
    assert res.returncode == 0, res.stderr[-3000:]
    sweep = tmp_path / "logs" / "train" / "multiruns" / "grid"
    assert (sweep / "0" / "metrics.json").is_file()
    failed = json.loads((sweep / "1" / "failed.json").read_text())
    assert "diverged" in failed["error"] and "model.optimizer.lr" in failed["error"]

    assert report_main([str(sweep)]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ")][1:]
    assert "| 1 | 0 | 0.001 |" in rows[0] and rows[1].startswith("| 2 | 1 | 1e+06 | — | failed")
    assert "2 runs, 1 failed" in out
    assert (sweep / "sweep.csv").read_text().count("\n") == 3
    assert (sweep / "sweep.png").stat().st_size > 1000


@pytest.mark.slow  # four trainings (test_study.py guards the sweeper in the default suite)
def test_optuna_study_runs_trials_continues_after_a_stop_and_reports_the_best(tmp_path):
    args = ["-m", "emotion.train", "hparams_search=optuna", *QUIET, f"paths.root_dir={tmp_path}", "run_name=tpe"]
    res = run_cli(*args, "hydra.sweeper.n_trials=2")
    assert res.returncode == 0, res.stderr[-3000:]
    res = run_cli(*args, "hydra.sweeper.n_trials=3")  # the same study, one more trial
    assert res.returncode == 0, res.stderr[-3000:]
    sweep = tmp_path / "logs" / "train" / "multiruns" / "tpe"
    study = optuna.load_study(study_name="tpe", storage=f"sqlite:///{sweep}/optuna.db")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 3
    assert sorted(d.name for d in sweep.iterdir() if (d / "metrics.json").is_file()) == ["0", "1", "2"]
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert results["best_value"] == study.best_value and results["best_trial"] == study.best_trial.number
    assert set(results["best_params"]) >= {"model.optimizer.lr", "model.loss.label_smoothing", "data.augment.translate"}

    assert report_main([str(sweep)]) == 0  # the report adds the study: states, importances, the best as a command
    md = (sweep / "sweep.md").read_text()
    assert "Optuna study `tpe`: 3 complete" in md and "| model.optimizer.lr |" in md
    command = md.split("```\n")[1]
    assert command.startswith("python -m emotion.train ") and "experiment=demo" in command
    assert "optuna." not in command and "hparams_search" not in command and "run_name=tpe-best" in command
    lr = study.best_params["model.optimizer.lr"]
    assert f"model.optimizer.lr={lr}" in command
