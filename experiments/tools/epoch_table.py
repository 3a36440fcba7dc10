"""Print a run's epoch table for its card: train and validation accuracy per epoch, the best epoch in bold.

    python experiments/tools/epoch_table.py logs/train/runs/RUN/history.json [--per-row 10]

``history.json`` is written by the training run (one entry per validated epoch, kept across ``ckpt_path=last``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def table(history: list[dict], per_row: int = 10) -> str:
    """Markdown tables of ``per_row`` epochs each; the epoch with the highest ``val/acc`` is bold."""
    if not history:
        raise SystemExit("history.json holds no epochs yet")
    best = max(e["val/acc"] for e in history)

    def mark(e: dict, text: str) -> str:
        return f"**{text}**" if e["val/acc"] == best else text

    def val(e: dict) -> str:
        return mark(e, f"{e['val/acc']:.4f}" if e["val/acc"] == best else f"{e['val/acc']:.3f}")

    out = []
    for i in range(0, len(history), per_row):
        rows = history[i : i + per_row]
        out += [
            "| epoch | " + " | ".join(mark(e, str(e["epoch"])) for e in rows) + " |",
            "|---|" + "---|" * len(rows),
            "| train acc (augmented, dropout on) | " + " | ".join(f"{e['train/acc']:.3f}" for e in rows) + " |",
            "| val acc (PublicTest) | " + " | ".join(val(e) for e in rows) + " |",
            "",
        ]
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("history", type=Path, help="a run's history.json")
    p.add_argument("--per-row", type=int, default=10)
    args = p.parse_args()
    print(table(json.loads(args.history.read_text()), args.per_row))


if __name__ == "__main__":
    main()
