"""How much better a model knows the augmented views it trained on than other views of the same training faces.

    python experiments/tools/teacher_views.py MODEL [MODEL ...] [--seed 42] [--epochs 0,16,31,32] [--batches 30]
        [--data ../shared/data/fer2013] [--override experiment=recipe ...]

Every training run draws its views from ``batch_seed(seed, epoch, batch)``; a model trained with ``--seed`` saw
exactly the views of that stream, epoch by epoch, for as many epochs as it trained (its best checkpoint's). For each
listed epoch this scores each model (accuracy on the labels, mean probability of the label, mean entropy) on the
first ``--batches`` training batches of that epoch as the stream draws them ("seen" when the model trained that
long), on the same faces in views of another stream, and unaugmented. A model more accurate on its own views than on
fresh ones of the same faces has memorised them: a student distilled with that seed's stream would be shown exactly
those (``model.distill.fresh_views``). The augmentation is the composed config's (``--override``; default the recipe's).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import torch


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="+", help="shipped model names or model files")
    p.add_argument("--seed", type=int, default=42, help="the seed the models trained with")
    p.add_argument("--epochs", default="0,16,31,32", help="0-based epochs of the stream to score")
    p.add_argument("--batches", type=int, default=30, help="training batches per epoch to score")
    p.add_argument("--data", default="../shared/data/fer2013")
    p.add_argument("--override", nargs="*", default=["experiment=recipe"], help="Hydra overrides for the data config")
    args = p.parse_args(argv)

    import hydra
    from hydra import compose, initialize_config_dir

    from emotion.cli import CONF_DIR
    from emotion.models.checkpoint import load_net
    from emotion.models.pretrained import model_file

    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[*args.override, f"data.root={args.data}", f"seed={args.seed}"])
    dm = hydra.utils.instantiate(cfg.data)
    dm.setup("fit")
    loader = dm.train_dataloader()
    faces, sampler = loader.dataset, loader.sampler  # the sampler orders and seeds the batches as a training run does
    other = 0x5EED5EED  # a stream no run draws from

    def batches(epoch: int, stream: int | None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The epoch's first batches, in the order a run draws them; views of ``stream`` (None: unaugmented)."""
        sampler.set_epoch(epoch)
        sampler.stream = stream or 0
        for _, (idx, seed) in zip(range(args.batches), sampler, strict=False):
            x = faces.x[idx]
            yield (x.float() / 255 if stream is None else dm.augment(x, seed)), faces.y[idx]

    print(f"seed {args.seed}, {args.batches} batches of {dm.batch_size} per epoch, augmentation {dm.augment}")
    print(f"{'model':22s} {'epoch':>5s} {'views':12s} {'accuracy':>8s} {'p(label)':>8s} {'entropy':>8s}")
    for name in args.models:
        net = load_net(model_file(name)).eval()
        for epoch in (int(e) for e in args.epochs.split(",")):
            for label, stream in (("the stream's", 0), ("fresh", other), ("unaugmented", None)):
                right = given = entropy = n = 0.0
                for x, y in batches(epoch, stream):
                    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
                        p = net(x).float().softmax(1)
                    right += (p.argmax(1) == y).sum().item()
                    given += p.gather(1, y[:, None]).sum().item()
                    entropy += -(p * p.clamp_min(1e-12).log()).sum().item()
                    n += len(y)
                print(f"{name:22s} {epoch:5d} {label:12s} {right / n:8.4f} {given / n:8.4f} {entropy / n:8.4f}")


if __name__ == "__main__":
    main()
