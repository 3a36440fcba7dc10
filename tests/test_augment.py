import pytest
import torch

from emotion.data import BatchAugment, FER2013DataModule


def batch(n=16):
    torch.manual_seed(0)
    return torch.randint(0, 256, (n, 1, 48, 48), dtype=torch.uint8)


def test_same_seed_same_output_other_seed_other_output():
    aug = BatchAugment(erasing_p=0.5)
    x = batch()
    assert torch.equal(aug(x, 7), aug(x, 7))
    assert not torch.equal(aug(x, 7), aug(x, 8))
    out = aug(x, 7)
    assert out.shape == x.shape and out.dtype == torch.float32 and out.min() >= 0 and out.max() <= 1


def test_identity_settings_leave_images_unchanged():
    x = batch()
    out = BatchAugment(hflip=False, rotate_deg=0, scale=(1, 1))(x, 0)
    assert torch.allclose(out, x.float() / 255, atol=1e-5)


def test_flip_only_mirrors_about_half_the_batch():
    x = batch(64)
    out = BatchAugment(hflip=True, rotate_deg=0, scale=(1, 1))(x, 0)
    ref = x.float() / 255
    flipped = [torch.allclose(o, r.flip(-1), atol=1e-5) for o, r in zip(out, ref)]
    same = [torch.allclose(o, r, atol=1e-5) for o, r in zip(out, ref)]
    assert all(f or s for f, s in zip(flipped, same))
    assert 16 < sum(flipped) < 48


def test_augmentation_is_per_sample():
    x = batch(1).repeat(8, 1, 1, 1)
    out = BatchAugment(rotate_deg=20)(x, 3)
    assert len({tuple(o.flatten()[:200].tolist()) for o in out}) == 8


def test_a_scale_above_one_zooms_out_and_fills_the_edge_by_the_padding_mode():
    """A crop of 1.44x the image's area shows the face at 1/1.2 of its size: a centred white square of 24 px comes
    out ~20 px wide, and the new edge is the padding's (border: the image's own edge, here black)."""
    x = torch.zeros(1, 1, 48, 48, dtype=torch.uint8)
    x[..., 12:36, 12:36] = 255
    plain = {"hflip": False, "rotate_deg": 0}
    same = BatchAugment(**plain, scale=(1, 1), padding_mode="border")(x, 0)
    out = BatchAugment(**plain, scale=(1.44, 1.44), padding_mode="border")(x, 0)
    width = lambda img: (img[0, 0, 24] > 0.5).sum().item()  # noqa: E731
    assert width(same) == 24 and width(out) == 20
    assert out[0, 0, 24, 24] == 1 and out[0, 0, :, 0].max() == 0 and out[0, 0, 0, :].max() == 0
    with pytest.raises(ValueError, match="above 1 zooms out"):
        BatchAugment(scale=(1.0, 2.5))


@pytest.mark.parametrize("kwargs", [{"scale": (0.0, 1.0)}, {"erasing_p": 2.0}, {"padding_mode": "wrap"}])
def test_invalid_augment_values_are_refused(kwargs):
    with pytest.raises(ValueError):
        BatchAugment(**kwargs)


class _Trainer:
    def __init__(self, training):
        self.training = training


def test_datamodule_augments_training_batches_only(folder_data, tmp_path):
    dm = FER2013DataModule(root=str(folder_data), batch_size=8, cache_dir=None, augment=BatchAugment(rotate_deg=30))
    dm.setup("fit")
    train_batch = next(iter(dm.train_dataloader()))
    val_batch = next(iter(dm.val_dataloader()))
    assert len(train_batch) == 3 and len(val_batch) == 2
    dm.trainer = _Trainer(training=True)
    x, _ = dm.on_after_batch_transfer(train_batch, 0)
    assert x.dtype == torch.float32 and not torch.allclose(x, train_batch[0].float() / 255)
    dm.trainer = _Trainer(training=False)
    xv, yv = dm.on_after_batch_transfer(val_batch, 0)
    assert xv.dtype == torch.uint8 and torch.equal(xv, val_batch[0])


def test_batch_order_is_a_function_of_seed_and_epoch(folder_data):
    dm = FER2013DataModule(root=str(folder_data), batch_size=8, cache_dir=None, seed=5)
    dm.setup("fit")
    loader = dm.train_dataloader()

    def labels(epoch):
        loader.sampler.set_epoch(epoch)
        return [b[1].tolist() for b in loader]

    assert labels(0) == labels(0)
    assert labels(0) != labels(1)


def test_mix_is_seeded_and_labels_follow_the_pixels():
    from emotion.data import BatchMix

    x, y = batch(7), torch.arange(7)  # distinct labels: the label weights tell the pixel shares
    xf = x.float() / 255
    mixup = BatchMix(mixup_alpha=0.4)
    xm, ym = mixup(x, y, 3, 7)
    assert torch.equal(xm, mixup(x, y, 3, 7)[0]) and not torch.equal(xm, mixup(x, y, 4, 7)[0])
    assert ym.shape == (7, 7) and torch.allclose(ym.sum(1), torch.ones(7))
    lam = float(ym[0, int(y[0])])  # each face is blended with its neighbour in the batch, weight lam
    assert torch.allclose(xm, lam * xf + (1 - lam) * xf.roll(1, 0), atol=1e-5)
    xc, yc = BatchMix(cutmix_alpha=1.0)(x, y, 3, 7)
    own = (xc == xf).float().mean(dim=(1, 2, 3))  # a box of the neighbour pasted in: the rest is the face itself
    pasted = (xc == xf.roll(1, 0)).float().mean(dim=(1, 2, 3))
    assert torch.allclose(own + pasted, torch.ones(7), atol=0.02)
    assert torch.allclose(yc[torch.arange(7), y], own, atol=0.02)  # the label weight is the face's share of pixels


def test_mix_off_and_bad_values():
    from emotion.data import BatchMix

    x, y = batch(4), torch.arange(4)
    for off in (BatchMix(), BatchMix(mixup_alpha=1.0, p=0.0)):
        xo, yo = off(x, y, 1, 7)
        assert xo is x and yo is y
    mixed = [BatchMix(mixup_alpha=1.0, p=0.5)(x, y, s, 7)[1].ndim == 2 for s in range(40)]
    assert 8 < sum(mixed) < 32  # about half of the batches
    for kwargs in ({"mixup_alpha": -1}, {"cutmix_alpha": -0.5}, {"p": 1.5}):
        with pytest.raises(ValueError, match="data.mix"):
            BatchMix(**kwargs)


def test_datamodule_mixes_training_batches_only(folder_data):
    from emotion.data import BatchMix

    dm = FER2013DataModule(root=str(folder_data), batch_size=8, cache_dir=None, mix=BatchMix(cutmix_alpha=1.0))
    dm.setup("fit")
    dm.trainer = _Trainer(training=True)
    x, y = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
    assert x.dtype == torch.float32 and y.shape == (8, 7)
    dm.trainer = _Trainer(training=False)
    xv, yv = dm.on_after_batch_transfer(next(iter(dm.val_dataloader())), 0)
    assert xv.dtype == torch.uint8 and yv.ndim == 1


PLAIN = {"hflip": False, "rotate_deg": 0, "scale": (1, 1)}


def test_brightness_and_contrast_move_each_faces_mean_and_spread_within_their_ranges():
    x = torch.full((64, 1, 48, 48), 100, dtype=torch.uint8)
    x[:, :, :, 24:] = 140
    ref = x.float() / 255
    lit = BatchAugment(**PLAIN, brightness=0.3)(x, 1)
    gain = lit.mean(dim=(1, 2, 3)) / ref.mean(dim=(1, 2, 3))
    assert 0.69 < gain.min() < 0.8 and 1.2 < gain.max() < 1.31 and len(set(gain.tolist())) == 64
    spread = BatchAugment(**PLAIN, contrast=0.3)(x, 1).std(dim=(1, 2, 3)) / ref.std(dim=(1, 2, 3))
    assert 0.69 < spread.min() < 0.8 and 1.2 < spread.max() < 1.31
    assert torch.allclose(BatchAugment(**PLAIN, contrast=0.3)(x, 1).mean(dim=(1, 2, 3)), ref.mean(dim=(1, 2, 3)))


def test_blur_smooths_about_blur_p_of_the_faces_and_keeps_their_mean():
    x = batch(200)
    ref = x.float() / 255
    out = BatchAugment(**PLAIN, blur_p=0.5, blur_sigma=1.5)(x, 2)
    rough = lambda t: (t[..., 1:, :] - t[..., :-1, :]).abs().mean(dim=(1, 2, 3))  # noqa: E731
    blurred = torch.tensor([not torch.allclose(o, r, atol=1e-5) for o, r in zip(out, ref)])
    assert 70 < int(blurred.sum()) < 130  # the others are untouched
    assert (rough(out[blurred]) < rough(ref[blurred])).all()
    assert torch.allclose(out.mean(dim=(1, 2, 3)), ref.mean(dim=(1, 2, 3)), atol=0.01)


def test_noise_has_the_configured_spread():
    x = torch.full((32, 1, 48, 48), 128, dtype=torch.uint8)
    out = BatchAugment(**PLAIN, noise_std=0.02)(x, 3)
    assert abs(float((out - 128 / 255).std()) - 0.02) < 0.002


@pytest.mark.parametrize(
    "kwargs", [{"brightness": 1.0}, {"contrast": -0.1}, {"blur_p": 1.5}, {"blur_sigma": 0}, {"noise_std": -1}]
)
def test_bad_photometric_values_are_refused(kwargs):
    with pytest.raises(ValueError, match="augment."):
        BatchAugment(**kwargs)
