"""Sharpness matching: blurred training faces, sharp test faces (emotion/models/sharpness.py)."""

import json

import cv2
import numpy as np
import pytest
import torch

from emotion.audit import main as audit_main
from emotion.models import EmotionCNN
from emotion.models.sharpness import (
    SIGMAS,
    blur_matrices,
    blur_sigma_between,
    blur_stack,
    laplacian_variance,
    match_sharpness,
)


def sharp_faces(n: int, seed: int = 0) -> torch.Tensor:
    """Noise-textured faces: plenty of high-frequency detail, values in 0..1."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (n, 1, 48, 48)).astype(np.float32)
    return torch.from_numpy(x)


@pytest.mark.parametrize("sigma", [0.5, 2.0, 4.0])
def test_blur_matrices_equal_opencv_gaussian_blur(sigma):
    img = sharp_faces(1)[0, 0].numpy()
    mats = blur_matrices(48)
    k = SIGMAS.index(sigma)
    ours = blur_stack(torch.from_numpy(img)[None, None], mats)[0, k].numpy()
    ref = cv2.GaussianBlur(img, (2 * int(np.ceil(3 * sigma)) + 1,) * 2, sigma, borderType=cv2.BORDER_REFLECT_101)
    assert np.abs(ours - ref).max() < 2e-3


def test_laplacian_variance_matches_opencv():
    img = sharp_faces(1)[0, 0].numpy()
    ref = cv2.Laplacian(img, cv2.CV_32F)[1:-1, 1:-1].var()
    assert laplacian_variance(torch.from_numpy(img)[None, None]).item() == pytest.approx(ref, rel=1e-3)


def test_sharp_inputs_are_blurred_to_the_target_and_blurred_inputs_pass_unchanged():
    mats = blur_matrices(48)
    sharp = sharp_faces(6)
    target = float(laplacian_variance(blur_stack(sharp, mats)[:, 5:6]).median())  # ~ sigma 3
    out = match_sharpness(sharp, target, mats)
    ratio = laplacian_variance(out)[:, 0] / target
    assert ((ratio > 0.5) & (ratio < 2.0)).all(), ratio
    blurrier = blur_stack(sharp, mats)[:, 7:8].contiguous()  # sigma 4: below the target already
    assert torch.equal(match_sharpness(blurrier, target, mats), blurrier)
    with pytest.raises(ValueError, match="grayscale N x 1 x 48 x 48"):
        match_sharpness(torch.rand(2, 3, 48, 48), target, mats)


def test_network_applies_matching_only_when_it_has_a_target():
    torch.manual_seed(0)
    net = EmotionCNN().eval()
    x = (sharp_faces(4) * 255).to(torch.uint8)
    plain = net(x)
    net.set_sharpness(1e-4)
    assert net.spec()["sharpness"] == 1e-4
    matched = net(x)
    assert not torch.allclose(plain, matched)  # sharp inputs were blurred before the first layer
    blurred = torch.from_numpy(
        np.stack([cv2.GaussianBlur(im[0], (0, 0), 4.0, borderType=cv2.BORDER_REFLECT_101) for im in x.numpy()])
    )[:, None]
    with_target = net(blurred)
    net.set_sharpness(0)
    assert torch.equal(with_target, net(blurred))  # inputs as blurred as the training faces pass unchanged
    with pytest.raises(ValueError, match="sharpness must be"):
        net.set_sharpness(-1.0)


def test_training_sets_the_target_from_the_training_images(folder_data):
    from emotion.data import FER2013DataModule

    dm = FER2013DataModule(root=str(folder_data), cache_dir=None)
    dm.setup("fit")
    images, _ = dm.arrays("train")
    per_image = laplacian_variance(torch.from_numpy(images).float() / 255)
    target = dm.train_sharpness()
    assert 0.85 <= (per_image <= target).float().mean() <= 0.95  # nine in ten training faces pass unchanged
    low = dm.train_sharpness(0.1)  # model.sharpness_quantile: a blurrier target
    assert low < target and 0.05 <= (per_image <= low).float().mean() <= 0.2


def test_audit_flags_splits_of_different_sharpness(folder_data, tmp_path, capsys):
    out = tmp_path / "a1"
    assert audit_main([str(folder_data), "--out", str(out)]) == 0
    assert json.loads((out / "audit.json").read_text())["sharpness"]["mismatch"] is False
    for path in (folder_data / "train").rglob("*.jpg"):  # blur the training half, as in the shared FER2013 copy
        img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        cv2.imwrite(str(path), cv2.GaussianBlur(img, (0, 0), 3.0))
    out = tmp_path / "a2"
    assert audit_main([str(folder_data), "--out", str(out)]) == 0
    sharp = json.loads((out / "audit.json").read_text())["sharpness"]
    assert sharp["mismatch"] is True and sharp["max_ratio"] > 4
    assert sharp["blur"]["blurred_split"] == "Training"
    assert sharp["blur"]["gaussian_sigma_px"] == pytest.approx(3, abs=0.4)
    assert "WARNING: splits differ" in capsys.readouterr().out


def test_eager_subset_path_equals_the_static_graph_path(monkeypatch):
    """Eager mode blurs only the sharper faces; traced/exported graphs compute all and select: same result."""
    import emotion.models.sharpness as sh

    mats = blur_matrices(48)
    sharp = sharp_faces(5)
    mixed = torch.cat([sharp, blur_stack(sharp, mats)[:, 6:7], blur_stack(sharp, mats)[:, 2:3]])  # 15 faces
    target = float(laplacian_variance(blur_stack(sharp, mats)[:, 4:5]).median())
    eager = match_sharpness(mixed, target, mats)
    monkeypatch.setattr(sh, "_graph_capture", lambda: True)
    static = match_sharpness(mixed, target, mats)
    assert torch.equal(eager, static)
    changed = (eager != mixed).flatten(1).any(1)
    assert changed[:5].all() and not changed[5:10].any()  # sharp ones blurred, blurrier ones untouched


def smooth_faces(n: int, seed: int) -> np.ndarray:
    """uint8 N×48×48 images with a face-like falling spectrum (white noise blurred by 1 px)."""
    x = sharp_faces(n, seed)
    return (blur_stack(x, blur_matrices(48, (1.0,)))[:, 0] * 255).round().numpy().astype(np.uint8)


@pytest.mark.parametrize("sigma", [1.5, 2.5])
def test_blur_sigma_between_recovers_the_blur_from_different_faces(sigma):
    sharp = smooth_faces(200, seed=1)
    other = torch.from_numpy(smooth_faces(200, seed=2)).float()[:, None] / 255  # not the same faces
    blurred = (blur_stack(other, blur_matrices(48, (sigma,)))[:, 0] * 255).round().numpy().astype(np.uint8)
    assert blur_sigma_between(sharp, blurred) == pytest.approx(sigma, abs=0.25)
    assert blur_sigma_between(sharp, sharp) == 0.0
    with pytest.raises(ValueError, match="image stacks"):
        blur_sigma_between(sharp, blurred[:, :40])


def test_single_blur_with_8bit_rounding_travels_in_the_spec():
    from emotion.models import build_from_spec

    torch.manual_seed(0)
    net = EmotionCNN().eval()
    net.set_sharpness(1.4e-4, [3.0], True)
    spec = net.spec()
    assert spec["sharpness_sigmas"] == [3.0] and spec["sharpness_round"] is True
    x = sharp_faces(4)
    out = match_sharpness(x, net.sharpness, net.blur_mats, net.sharpness_round)
    assert torch.equal(out, torch.round(out * 255) / 255)  # 8-bit levels, as stored training faces
    ref = torch.round(blur_stack(x, blur_matrices(48, (3.0,))) * 255) / 255
    assert torch.equal(out, ref)
    rebuilt = build_from_spec(spec)
    rebuilt.load_state_dict(net.state_dict())
    assert torch.equal(rebuilt.eval()(x), net(x))
    old = {k: v for k, v in spec.items() if k not in ("sharpness_sigmas", "sharpness_round")}  # files before v5
    assert build_from_spec(old).sharpness_sigmas == SIGMAS and build_from_spec(old).sharpness_round is False
    for bad in ([], [0.0], [float("nan")]):
        with pytest.raises(ValueError, match="sharpness sigmas"):
            net.set_sharpness(1e-4, bad)
