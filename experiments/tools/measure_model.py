"""Measure a trained model the way every shipped model is recorded, and print its emotion/weights/models.json entry.

    python experiments/tools/measure_model.py CHECKPOINT_OR_FILE OUT.safetensors [--data ../shared/data/fer2013]

1. exports the checkpoint to safetensors (parity-checked) and calibrates its temperature on one seeded half of
   PublicTest (``python -m emotion.calibrate``; ECE before/after on the other half) — OUT is the calibrated file —
   and repeats the fit/report on four more seeded halves (a multirun), since one half of 3,589 faces is a noisy
   measure of ECE (a perfectly calibrated model measures ~0.026 on 1,794 faces; ``calibrate`` prints that floor);
2. evaluates OUT on PublicTest with no TTA, flip TTA and ten-crop TTA, each on the full split and, in the same pass,
   without the faces that have a near-identical Training twin (``eval.json``'s ``without_twins``);
3. compares it, face by face with flip and with ten-crop TTA, against ``--against`` (default: the shipped default
   model, as it was before OUT was written; ``--against none`` skips it): McNemar's exact test (``evaluate
   compare_to=``), on all faces and without the twins — is the new model better beyond PublicTest's noise?
4. prints the numbers and the JSON fields for models.json. Run it with the machine otherwise idle for stable timing.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def cli(*args: str) -> None:
    if subprocess.run([sys.executable, "-m", *args]).returncode != 0:
        raise SystemExit(f"stopped: `python -m {' '.join(args)}` failed (its error is above)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", help=".ckpt or .safetensors")
    p.add_argument("out", type=Path, help="the calibrated .safetensors to write")
    p.add_argument("--data", default="../shared/data/fer2013")
    p.add_argument("--against", default="default", help="a model file or shipped name to compare with, or none")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        measure(args, Path(tmp))


def measure(args: argparse.Namespace, tmp: Path) -> None:
    logs = Path("logs")
    against = None
    if args.against != "none":  # a copy: OUT may be the very file it names
        from emotion.models.pretrained import model_file

        try:
            source = model_file(args.against)
        except FileNotFoundError as exc:
            raise SystemExit(f"--against: {exc}") from None
        against = tmp / f"against-{source.name}"
        shutil.copy(source, against)
    plain = tmp / f"{args.out.stem}.safetensors"  # its name titles the reliability diagram
    cli("emotion.export", f"ckpt_path={args.model}", "format=safetensors", f"out={plain}")
    run = f"measure-{args.out.stem}"
    cli("emotion.calibrate", f"ckpt_path={plain}", f"data.root={args.data}", f"out={args.out}", f"run_name={run}")
    seeds = range(1, 5)
    cli(
        "emotion.calibrate",
        "-m",
        f"ckpt_path={plain}",
        f"data.root={args.data}",
        f"out={tmp / 'discard.safetensors'}",
        f"run_name={run}-halves",
        f"seed={','.join(map(str, seeds))}",
    )
    calibration = json.loads((logs / "calibrate" / "runs" / run / "calibration.json").read_text())
    halves = [calibration] + [
        json.loads((logs / "calibrate" / "multiruns" / f"{run}-halves" / str(i) / "calibration.json").read_text())
        for i in range(len(seeds))
    ]
    results = {}
    for tta in ("none", "flip", "tencrop"):
        name = f"{run}-{tta}"
        compare = [f"compare_to={against}"] if against is not None and tta != "none" else []
        cli(
            "emotion.evaluate",
            f"ckpt_path={args.out}",
            f"data.root={args.data}",
            f"tta={tta}",
            f"run_name={name}",
            *compare,
        )
        results[tta] = json.loads((logs / "eval" / "runs" / name / "eval.json").read_text())
    flip, tencrop = results["flip"], results["tencrop"]
    entry = {
        "publictest_accuracy": round(results["none"]["accuracy"], 4),
        "publictest_accuracy_flip_tta": round(flip["accuracy"], 4),
        "publictest_macro_f1_flip_tta": round(flip["macro_f1"], 4),
        "publictest_accuracy_tencrop_tta": round(tencrop["accuracy"], 4),
        "publictest_macro_f1_tencrop_tta": round(tencrop["macro_f1"], 4),
        "publictest_without_twins_accuracy": round(results["none"]["without_twins"]["accuracy"], 4),
        "publictest_without_twins_accuracy_flip_tta": round(flip["without_twins"]["accuracy"], 4),
        "publictest_without_twins_accuracy_tencrop_tta": round(tencrop["without_twins"]["accuracy"], 4),
        "publictest_twins_excluded": flip["without_twins"]["excluded_twins"],
        "temperature": round(calibration["temperature"], 4),
        "ece_report_half_uncalibrated": round(calibration["before"]["ece"], 4),
        "ece_report_half_calibrated": round(calibration["after"]["ece"], 4),
        "ece_calibrated_five_halves_mean": round(sum(h["after"]["ece"] for h in halves) / len(halves), 4),
    }
    print(json.dumps(entry, indent=1))
    for name, r in (("flip", flip), ("ten-crop", tencrop)):
        print(f"per-class recall ({name} TTA):", {k: round(v, 3) for k, v in r["recall"].items()})
        print(f"confusion ({name} TTA):", r["confusion_matrix"])
    print("five halves (seed: T, ECE before -> after, floor of a perfectly calibrated model, p):")
    for seed, h in enumerate(halves):
        ref = h["after"]["ece_reference"]
        print(
            f"  {seed}: T {h['temperature']:.3f}, ECE {h['before']['ece']:.4f} -> {h['after']['ece']:.4f},"
            f" floor {ref['perfect_mean']:.4f} (p95 {ref['perfect_p95']:.4f}), p {ref['p_value']:.2f}"
        )
    print("thresholds (calibrated, report half):", json.dumps(calibration["thresholds_after"]))
    for tta, r in (("flip", flip), ("ten-crop", tencrop)):
        if c := r.get("compared_to"):
            for faces, cmp in (("all faces", c), ("without twins", c["without_twins"])):
                print(
                    f"against {args.against} ({tta} TTA, {faces}): {cmp['accuracy']:.4f} vs "
                    f"{cmp['other_accuracy']:.4f}; right only in the new model {cmp['only_this_right']}, "
                    f"only in {args.against} {cmp['only_other_right']}; McNemar exact p = {cmp['mcnemar_p']:.3f}"
                )


if __name__ == "__main__":
    main()
