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


def fake_sweep(root, jobs: dict[str, tuple[list[str], str | None]]):
    """A multirun folder as Hydra and our runs leave it: per job its overrides and its metrics.json text (None:
    the job failed before writing one)."""
    for name, (overrides, metrics) in jobs.items():
        (root / name / ".hydra").mkdir(parents=True)
        (root / name / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
        if metrics is not None:
            (root / name / "metrics.json").write_text(metrics)
    return root


def metrics_json(acc: float) -> str:
    return json.dumps({"metrics": {"val/acc": acc, "val/loss": 1.0 - acc}, "wall_time_s": 120})


def test_the_sweep_report_counts_a_cut_short_metrics_file_as_a_failed_job_and_names_it(tmp_path, capsys):
    sweep = fake_sweep(
        tmp_path / "sweep",
        {
            "0": (["model.optimizer.lr=0.001"], metrics_json(0.61)),
            "1": (["model.optimizer.lr=0.01"], metrics_json(0.64)),
            "2": (["model.optimizer.lr=0.1"], metrics_json(0.5)[:20]),  # cut short: a full disk, a copy interrupted
            "3": (["model.optimizer.lr=1.0"], None),
        },
    )
    assert report_main([str(sweep)]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ")][1:]
    assert [row.split(" | ")[1] for row in rows] == ["1", "0", "2", "3"]  # best first, then the failed jobs
    assert "failed: " in rows[2] and "metrics.json unreadable" in rows[2]
    assert "4 runs, 2 failed; wrote sweep.md, sweep.csv, sweep.png in" in out
    assert (sweep / "sweep.csv").read_text().count("\n") == 5


def test_the_sweep_report_refuses_a_metric_no_job_recorded_and_names_those_there_are(tmp_path, capsys):
    sweep = fake_sweep(tmp_path / "sweep", {"0": (["seed=1"], metrics_json(0.6)), "1": (["seed=2"], metrics_json(0.7))})
    assert report_main([str(sweep), "--metric", "val/accuracy"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: --metric val/accuracy: no job of this sweep recorded it; its jobs recorded val/acc, val/loss"
    assert not (sweep / "sweep.md").exists()
    assert report_main([str(sweep), "--metric", "val/loss", "--mode", "min"]) == 0
    assert [line.split(" | ")[1] for line in capsys.readouterr().out.splitlines() if line.startswith("| ")][1:] == [
        "1",
        "0",
    ]


def test_the_sweep_report_of_a_folder_it_cannot_write_goes_elsewhere_with_out(tmp_path, capsys):
    sweep = fake_sweep(tmp_path / "sweep", {"0": (["seed=1"], metrics_json(0.6))})
    taken = tmp_path / "taken"
    taken.write_text("mine")
    assert report_main([str(sweep), "--out", str(taken)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: cannot write the report into {taken} (is a file, not a folder); give --out DIR"
    assert report_main([str(sweep), "--out", str(tmp_path / "reports" / "s1")]) == 0
    assert "1 runs, 0 failed; wrote sweep.md, sweep.csv in" in capsys.readouterr().out  # one job: nothing to plot
    assert sorted(p.name for p in (tmp_path / "reports" / "s1").iterdir()) == ["sweep.csv", "sweep.md"]
    assert not (sweep / "sweep.md").exists()


@pytest.mark.parametrize("what", ["missing", "a-file", "no-jobs"])
def test_the_sweep_report_of_something_that_is_not_a_sweep_is_one_line(tmp_path, capsys, what):
    target = tmp_path / "x"
    if what == "a-file":
        target.write_text("not a sweep")
    elif what == "no-jobs":
        target.mkdir()
    assert report_main([str(target)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {target} ") and "\n" not in err
