"""Integration on the real FER2013 when it is on this machine (FER2013_ROOT or ../shared/data/fer2013)."""

import hydra
import lightning as L
import pytest

from tests.conftest import fer2013_root, make_cfg

FER = fer2013_root()
pytestmark = pytest.mark.skipif(FER is None, reason="FER2013 not found (set FER2013_ROOT)")


class LossRecorder(L.Callback):
    def __init__(self):
        self.losses = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]))


@pytest.mark.slow  # real FER2013 training (the demo trains on generated faces in the default suite)
def test_a_few_hundred_steps_on_fer2013_learn(tmp_path):
    cfg = make_cfg(
        tmp_path,
        [
            "experiment=baseline",
            f"data.root={FER}",
            "data.batch_size=32",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=250",
            "trainer.enable_progress_bar=false",
            "callbacks=none",
            "logger=csv",
        ],
    )
    L.seed_everything(0)
    dm = hydra.utils.instantiate(cfg.data)
    model = hydra.utils.instantiate(cfg.model)
    recorder = LossRecorder()
    trainer = hydra.utils.instantiate(cfg.trainer, callbacks=[recorder], logger=False, enable_checkpointing=False)
    trainer.fit(model, datamodule=dm)

    assert dm.class_names[6] == "neutral" and dm.info["train_class_counts"]["neutral"] == 4965  # by name
    assert len(recorder.losses) == 250
    first, last = sum(recorder.losses[:25]) / 25, sum(recorder.losses[-25:]) / 25
    assert last < first - 0.02
    val_counts = dm.info["val_class_counts"]
    majority = max(val_counts.values()) / sum(val_counts.values())
    assert trainer.callback_metrics["val/acc"] > majority


def test_ddp_ranks_share_the_one_global_batch_order_and_evaluation_sees_every_face_once():
    """Rank r of w takes global batches r, r + w, … with their global seeds (so a face's augmentation does not
    depend on the process count); each epoch reshuffles; evaluation splits the faces, none repeated or lost."""
    from emotion.data.datamodule import EpochBatchSampler

    def batches(rank, world, epoch, **kw):
        sampler = EpochBatchSampler(103, 10, seed=3, rank=rank, world=world, **kw)
        sampler.set_epoch(epoch)
        assert len(sampler) == len(list(sampler))
        return [(idx.tolist(), seed) for idx, seed in sampler]

    one = batches(0, 1, epoch=1, shuffle=True, drop_last=True, even=True)
    two = [batches(r, 2, epoch=1, shuffle=True, drop_last=True, even=True) for r in range(2)]
    assert two[0] == one[0:10:2] and two[1] == one[1:10:2]  # 10 full batches, 5 each, the same seeds
    assert batches(0, 1, epoch=2, shuffle=True, drop_last=True, even=True) != one
    three = [batches(r, 3, epoch=1, shuffle=True, drop_last=True, even=True) for r in range(3)]
    assert [len(b) for b in three] == [3, 3, 3]  # 9 of 10: every rank steps equally often
    faces = [i for r in range(3) for idx, _ in batches(r, 3, epoch=0, shuffle=False) for i in idx]
    assert faces == list(range(103))
