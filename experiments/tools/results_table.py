"""The README's table of shipped models, generated from ``emotion/weights/models.json`` (the one record of their
numbers): ``python experiments/tools/results_table.py`` rewrites the block between the README's
``<!-- results:start -->`` and ``<!-- results:end -->`` markers; ``--check`` only says whether it is current
(``tests/test_layout.py`` runs the check)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
REGISTRY = ROOT / "emotion" / "weights" / "models.json"
START, END = "<!-- results:start -->", "<!-- results:end -->"


def _acc(card: dict, key: str) -> str:
    return f"{card[key]:.4f}" if key in card else "—"


def table(registry: dict) -> str:
    """Markdown: one row per shipped model, the default first."""
    lines = [
        "| model | network | PublicTest: plain / flip / ten-crop | without Training twins | macro-F1 (flip) "
        "| ECE (5 halves) | PublicTest faces in scenes: end to end (found) | card |",
        "|---|---|---|---|---|---|---|---|",
    ]
    names = sorted(registry["models"], key=lambda n: (n != registry["default"], n))
    for name in names:
        c = registry["models"][name]
        tag = f"**{name}** (default)" if name == registry["default"] else name
        if "teacher_of" in c:
            tag += f" (teacher of {c['teacher_of'].split(' (')[0]})"
        plain = " / ".join(_acc(c, f"publictest_accuracy{s}") for s in ("", "_flip_tta", "_tencrop_tta"))
        twins = " / ".join(_acc(c, f"publictest_without_twins_accuracy{s}") for s in ("", "_flip_tta", "_tencrop_tta"))
        f1 = f"{c['publictest_macro_f1_flip_tta']:.3f}" if "publictest_macro_f1_flip_tta" in c else "—"
        ece = f"{c['ece_calibrated_five_halves_mean']:.3f}" if "ece_calibrated_five_halves_mean" in c else "—"
        scenes = (
            f"{c['scenes_end_to_end']:.3f} ({c['scenes_found']:.3f})" if "scenes_end_to_end" in c else "—"
        )  # experiments/faces_in_the_field/bench.py, default settings
        lines.append(f"| {tag} | {c['architecture']} | {plain} | {twins} | {f1} | {ece} | {scenes} | `{c['card']}` |")
    return "\n".join(lines)


def render(readme: str, registry: dict) -> str:
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{table(registry)}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="exit 1 if the README's table is not the generated one")
    args = p.parse_args(argv)
    readme = README.read_text()
    wanted = render(readme, json.loads(REGISTRY.read_text()))
    if args.check:
        if wanted != readme:
            print(f"{README}: the results table differs from {REGISTRY}; run python {Path(__file__).relative_to(ROOT)}")
            return 1
        return 0
    README.write_text(wanted)
    print(f"wrote the results table of {README}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
