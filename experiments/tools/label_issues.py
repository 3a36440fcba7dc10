"""Find the training faces whose FER2013 label looks wrong, with models that never saw them (confident learning).

    # 1. split the training faces into K folds: one data.exclude file per fold
    python experiments/tools/label_issues.py folds --data ../shared/data/fer2013 --k 4 --out logs/folds
    # 2. train one model per fold, each without its fold (the command printed by step 1), e.g.
    python -m emotion.train experiment=recipe model.distill.teacher=null model.distill.drop_labels_below=0 \
        data.exclude=logs/folds/fold0.json ...
    # 3. out-of-fold predictions, cleanlab's verdict, and a data.exclude file of the flagged faces
    python experiments/tools/label_issues.py find --data ../shared/data/fer2013 --folds logs/folds M0 M1 M2 M3
    # 4. train without them: python -m emotion.train ... data.exclude=logs/folds/label_issues.json

Step 3 writes ``label_issues.json`` (``{"exclude": [paths], ...}`` with the per-class report) and
``out_of_fold.npz`` (sources, labels, probabilities, class names, TTA) into the folds folder. A gentler prune from
the same predictions, without running the models again: ``find --folds logs/folds --probs logs/folds/out_of_fold.npz
--frac-noise 0.5 --out logs/folds/label_issues_half.json``. See emotion/evaluation/label_issues.py.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from emotion.errors import UserError, fail


def training_faces(data: str, image_size: int = 48):
    """The training split's sources, uint8 faces and labels, as a training run sees them (before any exclusion)."""
    from emotion.data import FER2013DataModule

    dm = FER2013DataModule(root=data, image_size=image_size, augment=None, download=False)
    dm.setup("fit")
    train = dm.splits.train
    return dm.raw.sources[train], dm.raw.images[train], dm.raw.labels[train], dm.class_names


def cmd_folds(a: argparse.Namespace) -> None:
    from emotion.evaluation.label_issues import stratified_folds

    sources, _, labels, _ = training_faces(a.data)
    a.out.mkdir(parents=True, exist_ok=True)
    for i, fold in enumerate(stratified_folds(labels, a.k, a.seed)):
        path = a.out / f"fold{i}.json"
        path.write_text(json.dumps({"fold": i, "k": a.k, "seed": a.seed, "exclude": sources[fold].tolist()}))
        print(f"{path}: {len(fold)} of {len(labels)} training faces")
    print(
        "train one model per fold without its fold and without a teacher (one that saw every face would leak the "
        "held-out labels), e.g.\n  python -m emotion.train experiment=recipe model.distill.teacher=null "
        f"model.distill.drop_labels_below=0 data.exclude={a.out}/fold<i>.json run_name=fold<i>"
    )


def read_folds(folder: Path, sources: np.ndarray) -> list[np.ndarray]:
    paths = sorted(folder.glob("fold*.json"), key=lambda p: int(p.stem[4:]))
    if not paths:
        raise UserError(f"{folder} holds no fold<i>.json files; make them with the `folds` command")
    where = {s: i for i, s in enumerate(sources.tolist())}
    folds = []
    for p in paths:
        listed = json.loads(p.read_text())["exclude"]
        missing = [s for s in listed if s not in where]
        if missing:
            raise UserError(f"{p}: {len(missing)} faces are not training faces of --data, e.g. {missing[0]}")
        folds.append(np.array(sorted(where[s] for s in listed), np.int64))
    return folds


def fold_probs(a: argparse.Namespace):
    """Out-of-fold probabilities: from the fold models, or read back from an earlier run's ``out_of_fold.npz``."""
    if a.probs:
        if a.models:
            raise UserError("give either the fold models or --probs (an earlier out_of_fold.npz), not both")
        with np.load(a.probs) as f:
            missing = {"sources", "labels", "probs", "class_names", "tta"} - set(f.files)
            if missing:
                what = ", ".join(sorted(missing))
                raise UserError(f"--probs {a.probs}: no {what}; give an out_of_fold.npz of `find`")
            return f["sources"], f["labels"], f["probs"], f["class_names"].tolist(), str(f["tta"])
    if not a.models:
        raise UserError("give one model per fold (in fold order), or --probs with an earlier out_of_fold.npz")
    if not a.data:
        raise UserError("--data is needed to run the fold models on the training faces")
    import torch

    from emotion.evaluation.label_issues import out_of_fold_probs
    from emotion.models.checkpoint import load_net
    from emotion.models.pretrained import model_file

    nets = [load_net(model_file(m)) for m in a.models]
    sizes = {n.input_size for n in nets}
    if len(sizes) != 1:
        raise UserError(f"the models take different input sizes {sorted(sizes)}; give models of one size")
    sources, images, labels, class_names = training_faces(a.data, sizes.pop())
    folds = read_folds(a.folds, sources)
    device = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    probs = out_of_fold_probs(nets, folds, images, a.tta, device)
    np.savez_compressed(
        a.folds / "out_of_fold.npz",
        sources=sources,
        labels=labels,
        probs=probs,
        class_names=np.array(class_names),
        tta=a.tta,
    )
    return sources, labels, probs, class_names, a.tta


def cmd_find(a: argparse.Namespace) -> None:
    from emotion.evaluation.label_issues import find_issues, issue_report

    sources, labels, probs, class_names, tta = fold_probs(a)
    issues = find_issues(labels, probs, a.filter_by, a.frac_noise)
    report = issue_report(labels, probs, issues, class_names)
    out = {
        "exclude": sources[issues].tolist(),
        "models": a.models or str(a.probs),
        "tta": tta,
        "filter_by": a.filter_by,
        "frac_noise": a.frac_noise,
        **report,
    }
    target = a.out or a.folds / "label_issues.json"
    target.write_text(json.dumps(out, indent=1))
    print(
        f"out-of-fold accuracy {report['out_of_fold_accuracy']:.4f} on {report['faces']} training faces; "
        f"{report['flagged']} flagged ({report['flagged'] / report['faces']:.1%}, frac_noise {a.frac_noise})"
    )
    for name, row in report["per_class"].items():
        prefer = ", ".join(f"{k} {v}" for k, v in sorted(row["models_prefer"].items(), key=lambda kv: -kv[1]))
        print(f"  {name:9s} {row['flagged']:5d} of {row['faces']:5d} flagged; the models prefer: {prefer or '-'}")
    saved = "" if a.probs else f" and {a.folds}/out_of_fold.npz"
    print(f"wrote {target} (a data.exclude file){saved}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("folds", help="split the training faces into K folds (data.exclude files)")
    f.add_argument("--data", required=True)
    f.add_argument("--k", type=int, default=4)
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--out", type=Path, required=True)
    g = sub.add_parser("find", help="out-of-fold predictions and cleanlab's label issues")
    g.add_argument("--data", help="the data root (needed with models, not with --probs)")
    g.add_argument("--folds", type=Path, required=True, help="the folder of fold<i>.json files")
    g.add_argument("models", nargs="*", help="one model per fold, in fold order (.ckpt, .safetensors or a name)")
    g.add_argument("--probs", type=Path, help="an earlier run's out_of_fold.npz instead of the models (no inference)")
    g.add_argument("--frac-noise", type=float, default=1.0, help="flag only this fraction of the estimated errors")
    g.add_argument("--out", type=Path, help="where the data.exclude file goes (default: <folds>/label_issues.json)")
    g.add_argument("--tta", default="flip", choices=("none", "flip", "tencrop"))
    g.add_argument("--device", help="where the models run (default: cuda when there is a GPU, else cpu)")
    g.add_argument("--filter-by", default="prune_by_noise_rate", help="cleanlab's find_label_issues filter_by")
    a = p.parse_args(argv)
    try:
        (cmd_folds if a.cmd == "folds" else cmd_find)(a)
    except (UserError, FileNotFoundError) as exc:
        fail(exc)


if __name__ == "__main__":
    main()
