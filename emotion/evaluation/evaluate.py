"""Evaluate a trained model on any labelled folder: ``python -m emotion.evaluate ckpt_path=… data.root=DIR``.

``DIR`` may be a full FER2013 root (its test split is used, see the split protocol), a folder holding only
``test/<class>/*.jpg``, or class folders directly. Prints accuracy, macro-F1, a per-class table and the confusion
matrix, and writes them to ``eval.json`` (plus a confusion-matrix PNG) in the run directory.

``compare_to=OTHER`` (a model file or shipped name) scores a second model on the same faces with the same TTA and
says whether the two differ beyond noise (McNemar's exact test, :mod:`emotion.evaluation.paired`); ``compare_tta=MODE``
scores the other side with another TTA — alone, the same model (is ten-crop's gain over flip real?).

On a full FER2013 root (training faces beside the evaluated ones) the same pass also scores the faces without a
near-identical training twin (``without_twins`` in ``eval.json``, comparison included); ``exclude=twins`` leaves
them out of the whole report instead.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from emotion.cli import check_config, model_path, resolve_model, route_lightning_logs
from emotion.errors import UserError

log = logging.getLogger(__name__)


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    split, exclude = cfg.get("split", "test"), cfg.get("exclude")
    if split not in ("train", "val", "test"):
        raise UserError(f"split must be train, val or test, got {split!r}")
    if exclude not in (None, "twins"):
        raise UserError(f"exclude must be null or twins, got {exclude!r}")
    path = model_path(cfg)
    other_path = resolve_model(str(cfg.compare_to)) if cfg.get("compare_to") else None
    compare_tta = cfg.get("compare_tta") or cfg.tta
    check_config(cfg)  # all of the above before torch and Lightning are imported
    import hydra
    import lightning as L

    route_lightning_logs()
    import torch

    from emotion.atomic import save_figure, write_json
    from emotion.evaluation.paired import paired_comparison
    from emotion.evaluation.twins import drop_twins, twin_mask
    from emotion.models.checkpoint import load_net
    from emotion.models.module import EmotionModule
    from emotion.models.tta import TTA_MODES
    from emotion.training.callbacks import EvalResults
    from emotion.training.reports import confusion_matrix_figure, hardware
    from emotion.training.runs import overrides

    for key, mode in (("tta", cfg.tta), ("compare_tta", compare_tta)):
        if mode not in TTA_MODES:
            raise UserError(f"{key} must be one of {', '.join(TTA_MODES)}, got {mode!r}")
    L.seed_everything(cfg.seed, workers=True)
    net = load_net(path)
    other = load_net(other_path) if other_path is not None else net  # both refused, if at all, before any scoring
    if other.class_names != net.class_names or other.input_size != net.input_size:
        raise UserError(
            f"compare_to={other_path} takes {other.input_size}-px faces of {other.class_names}, "
            f"{path} {net.input_size}-px faces of {net.class_names}: compare models of the same classes and size"
        )
    # the faces at the size the model was trained on: its spec, not data.image_size, is the fact
    datamodule = hydra.utils.instantiate(cfg.data, augment=None, image_size=net.input_size)
    datamodule.setup("test")
    n_twins = drop_twins(datamodule, split) if exclude == "twins" else 0
    has_twins = exclude is None and split != "train" and datamodule.has_training_faces()
    keep = ~torch.from_numpy(twin_mask(datamodule, split)) if has_twins else None  # no twin; in evaluation order
    if tuple(datamodule.class_names) != net.class_names:
        raise UserError(f"model classes {net.class_names} differ from the data's {datamodule.class_names}")

    def score(model, tta: str) -> tuple[dict[str, float], dict[str, Any]]:
        evals = EvalResults(figures=False)
        trainer = hydra.utils.instantiate(
            cfg.trainer, callbacks=[evals], logger=False, enable_model_summary=False, enable_checkpointing=False
        )
        module = EmotionModule(model, tta=tta, channels_last=True)  # oneDNN's faster layout: ~1.7x on a CPU
        metrics = trainer.test(module, dataloaders=datamodule.eval_dataloader(split), verbose=False)[0]
        return metrics, evals.results["test"]

    metrics, outcome = score(net, cfg.tta)
    confusion = outcome["confusion_matrix"]
    result = {
        "model": path,
        "data_root": str(datamodule.root),
        "split": split,
        "split_protocol": datamodule.info["split_protocol"],
        "n_images": int(sum(map(sum, confusion))),
        "tta": cfg.tta,
        "excluded_twins": n_twins if exclude == "twins" else None,  # faces left out: a near-identical training twin
        "class_names": list(net.class_names),
        "accuracy": metrics["test/acc"],
        "macro_accuracy": metrics["test/macro_acc"],
        "macro_f1": metrics["test/macro_f1"],
        "ece": metrics["test/ece"],  # expected calibration error at the model's temperature
        "temperature": net.temperature,
        "recall": {n: metrics[f"test/recall_{n}"] for n in net.class_names},
        "confusion_matrix": confusion,
        "overrides": overrides(),
        "hardware": hardware(),
    }
    if keep is not None:
        result["without_twins"] = {
            "n_images": int(keep.sum()),
            "excluded_twins": int((~keep).sum()),
            "accuracy": float(outcome["correct"][keep].float().mean()) if keep.any() else float("nan"),
        }
    if other_path is not None or compare_tta != cfg.tta:
        _, other_outcome = score(other, compare_tta)
        comparison = paired_comparison(outcome["correct"], other_outcome["correct"])
        result["compared_to"] = {"model": other_path or path, "tta": compare_tta, **comparison}
        if keep is not None:
            result["compared_to"]["without_twins"] = paired_comparison(
                outcome["correct"][keep], other_outcome["correct"][keep]
            )
    out_dir = Path(cfg.paths.output_dir)
    write_json(result, out_dir / "eval.json")
    title = f"{split} acc {result['accuracy']:.4f} (tta={cfg.tta})"
    save_figure(confusion_matrix_figure(confusion, net.class_names, title), out_dir / "confusion.png")
    print_result(result)
    log.info("wrote %s", out_dir / "eval.json")
    return result


def print_result(r: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 160)  # never cut the table off a terminal
    console.print(
        f"[bold]{r['model']}[/] on {r['data_root']} ({r['split']}, {r['n_images']} images"
        + (f" without {r['excluded_twins']} with a training twin" if r.get("excluded_twins") is not None else "")
        + f", tta={r['tta']}): "
        f"accuracy [bold]{r['accuracy']:.4f}[/], macro-F1 {r['macro_f1']:.4f}, "
        f"macro accuracy {r['macro_accuracy']:.4f}, ECE {r['ece']:.4f} (temperature {r['temperature']:.3g})"
    )
    names = r["class_names"]
    table = Table("true \\ predicted", *[n[:8] for n in names], "recall")
    for name, row in zip(names, r["confusion_matrix"]):
        table.add_row(name, *[str(v) for v in row], f"{r['recall'][name]:.3f}")
    console.print(table)
    if w := r.get("without_twins"):
        console.print(
            f"without the {w['excluded_twins']} faces that have a training twin ({w['n_images']} images): "
            f"accuracy [bold]{w['accuracy']:.4f}[/]"
        )
    if c := r.get("compared_to"):
        for faces, cmp in (("the same faces", c), ("the faces without a training twin", c.get("without_twins"))):
            if cmp is None:
                continue
            verdict = "a real difference (p < 0.05)" if cmp["mcnemar_p"] < 0.05 else "within the noise of these faces"
            console.print(
                f"against [bold]{c['model']}[/] with tta={c['tta']} on {faces}: accuracy {cmp['other_accuracy']:.4f} "
                f"({100 * (cmp['accuracy'] - cmp['other_accuracy']):+.2f} points for this model); right only here "
                f"{cmp['only_this_right']}, only there {cmp['only_other_right']}; McNemar exact p = "
                f"{cmp['mcnemar_p']:.3f}: {verdict}"
            )
