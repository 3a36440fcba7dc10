import pytest
import torch
import torch.nn.functional as F

from emotion.labels import FER2013_CLASSES
from emotion.models import EmotionCNN, EmotionEnsemble, build_from_spec
from emotion.models.emotion_cnn import seed_order_logits

# The seed's layer table: (module name, output shape after that module for a 1×1×48×48 input).
SEED_TABLE = [
    ("conv1", (32, 48, 48)),
    ("conv2", (64, 48, 48)),
    ("drop1", (64, 24, 24)),  # after pool
    ("conv3", (128, 24, 24)),
    ("conv4", (128, 12, 12)),
    ("drop2", (128, 6, 6)),  # after pool
    ("fc1", (1024,)),
    ("fc2", (7,)),
]


def test_every_intermediate_shape_matches_the_seed_table():
    net = EmotionCNN().eval()
    shapes = {}
    for name, _ in SEED_TABLE:
        getattr(net, name).register_forward_hook(
            lambda m, i, o, name=name: shapes.__setitem__(name, tuple(o.shape[1:]))
        )
    net(torch.zeros(2, 1, 48, 48))
    assert shapes == dict(SEED_TABLE)
    assert net.fc1.in_features == 4608
    assert sum(p.numel() for p in net.parameters()) == (
        (9 * 32 + 32)
        + (9 * 32 * 64 + 64)
        + (9 * 64 * 128 + 128)
        + (9 * 128 * 128 + 128)
        + (4608 * 1024 + 1024)
        + (1024 * 7 + 7)
    )


def test_relu_after_pool_gives_the_seed_order_outputs_and_gradients_exactly():
    net = EmotionCNN().train()
    x = torch.randn(8, 1, 48, 48)
    x[:, :, :24] = -1.0  # whole pooling windows below zero: ReLU-before-pool and pool-before-ReLU must agree there too
    y = torch.randint(0, 7, (8,))
    grads = []
    for forward in (net.logits, lambda t: seed_order_logits(net, t)):
        net.zero_grad()
        torch.manual_seed(3)  # the same dropout masks for both orders
        loss = F.cross_entropy(forward(x), y)
        loss.backward()
        grads.append((loss.detach(), [p.grad.clone() for p in net.parameters()]))
    (loss_ours, g_ours), (loss_seed, g_seed) = grads
    assert torch.equal(loss_ours, loss_seed)
    assert all(torch.equal(a, b) for a, b in zip(g_ours, g_seed, strict=True))


def test_forward_returns_logits_and_no_softmax_layer():
    net = EmotionCNN().eval()
    assert not any(isinstance(m, torch.nn.Softmax) for m in net.modules())
    torch.manual_seed(0)
    logits = net(torch.rand(4, 1, 48, 48))
    probs = net.predict_proba(torch.rand(4, 1, 48, 48))
    assert torch.allclose(probs.sum(1), torch.ones(4))
    # Cross-entropy on these outputs equals NLL of their log-softmax: they are unnormalised logits.
    y = torch.tensor([0, 1, 2, 3])
    assert torch.allclose(F.cross_entropy(logits, y), F.nll_loss(torch.log_softmax(logits, 1), y))
    assert not torch.allclose(logits.exp().sum(1), torch.ones(4))


def test_logits_stay_float32_under_bf16_autocast():
    """trainer.precision=bf16-mixed computes the layers in bf16 but hands losses and metrics float32 logits."""
    torch.manual_seed(0)
    nets = [EmotionCNN().eval(), EmotionEnsemble.of([EmotionCNN().eval(), EmotionCNN().eval()])]
    x = torch.rand(4, 1, 48, 48)
    for net in nets:
        with torch.no_grad():
            full = net(x)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                mixed = net(x)
        assert mixed.dtype == torch.float32
        assert not torch.equal(mixed, full)  # the layers did run in bf16 …
        assert torch.allclose(mixed, full, atol=0.05)  # … to bf16's precision


def test_normalisation_lives_in_the_model_and_accepts_uint8_or_float():
    net = EmotionCNN(mean=0.4, std=0.2).eval()
    raw = torch.randint(0, 256, (3, 1, 48, 48), dtype=torch.uint8)
    assert torch.allclose(net(raw), net(raw.float() / 255), atol=1e-5)
    state = net.state_dict()
    assert float(state["mean"]) == pytest.approx(0.4) and float(state["std"]) == pytest.approx(0.2)
    rebuilt = build_from_spec(net.spec())
    rebuilt.load_state_dict(state)
    assert torch.allclose(rebuilt.eval()(raw), net(raw))


def test_per_face_scaling_makes_the_network_blind_to_brightness_and_contrast():
    """input_norm=per_face: a face under a brighter lamp or a flatter exposure is the same input; dataset scaling (the
    default) sees the change. Both travel in the spec, so a rebuilt network scales as its original did."""
    torch.manual_seed(0)
    face = 0.25 + 0.5 * torch.rand(3, 1, 48, 48)  # headroom: the changed copies stay inside 0..1
    changed = (face * 1.2 - 0.1, face * 0.6 + 0.2)
    per_face, dataset = EmotionCNN(input_norm="per_face").eval(), EmotionCNN().eval()
    for other in changed:  # an untrained network's logits are small: changes are measured against their size
        moved = {
            n: float((net(other) - net(face)).abs().max() / net(face).abs().max())
            for n, net in (("per_face", per_face), ("dataset", dataset))
        }
        assert moved["per_face"] < 0.01 and moved["dataset"] > 0.05, moved
    flat = torch.full((1, 1, 48, 48), 0.5)
    assert torch.isfinite(per_face(flat)).all()  # no division by a zero deviation
    for net in (per_face, dataset):
        rebuilt = build_from_spec(net.spec())
        rebuilt.load_state_dict(net.state_dict())
        assert rebuilt.input_norm == net.input_norm and torch.allclose(rebuilt.eval()(face), net(face))
    old = {k: v for k, v in per_face.spec().items() if k != "input_norm"}  # a file written before the option
    assert build_from_spec(old).input_norm == "dataset"
    with pytest.raises(ValueError, match="input_norm must be one of dataset, per_face; got 'per_image'"):
        EmotionCNN(input_norm="per_image")


def test_spec_carries_class_names_and_preprocessing():
    spec = EmotionCNN(dropout_fc=0.3).spec()
    assert spec["class_names"] == list(FER2013_CLASSES)
    assert spec["input_size"] == 48 and spec["arch"] == "emotion_cnn"
    assert spec["arch_kwargs"]["dropout_fc"] == 0.3


@pytest.mark.parametrize("kwargs", [{"dropout_fc": 1.5}, {"dropout_conv1": -0.1}, {"input_size": 64}])
def test_invalid_model_values_are_refused(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        EmotionCNN(**kwargs)


def test_emotion_vgg_shapes_spec_round_trip_and_bad_values():
    from emotion.models import EmotionVGG

    net = EmotionVGG(widths=(8, 16, 16, 32), fc=32).eval()
    raw = torch.randint(0, 256, (3, 1, 48, 48), dtype=torch.uint8)
    assert net(raw).shape == (3, 7)
    rebuilt = build_from_spec(net.spec())
    rebuilt.load_state_dict(net.state_dict())
    assert torch.equal(rebuilt.eval()(raw), net(raw))
    with pytest.raises(ValueError, match="below one pixel"):
        EmotionVGG(widths=(8,) * 6)
    with pytest.raises(ValueError, match="dropout"):
        EmotionVGG(dropout=1.0)


def test_emotion_vgg_stem_pool_halves_the_input_and_travels_in_the_spec():
    from emotion.models import EmotionVGG

    net = EmotionVGG(widths=(8, 16, 16), fc=32, stem_pool=2).eval()
    seen: list[tuple[int, ...]] = []
    first_conv = next(m for m in net.features if isinstance(m, torch.nn.Conv2d))
    first_conv.register_forward_hook(lambda m, i, o: seen.append(tuple(i[0].shape)))
    raw = torch.randint(0, 256, (2, 1, 48, 48), dtype=torch.uint8)
    assert net(raw).shape == (2, 7)
    assert seen == [(2, 1, 24, 24)]
    # the pooled input is the 2x2 mean of the normalised pixels
    expected = torch.nn.functional.avg_pool2d(net.normalize(raw), 2)
    assert torch.allclose(net.features[0](net.normalize(raw)), expected)
    spec = net.spec()
    assert spec["arch_kwargs"]["stem_pool"] == 2
    rebuilt = build_from_spec(spec)
    rebuilt.load_state_dict(net.state_dict())
    assert torch.equal(rebuilt.eval()(raw), net(raw))
    # files written before stem_pool existed rebuild without it, with their layer names unchanged
    old_spec = EmotionVGG(widths=(8, 16, 16), fc=32).spec()
    old_spec["arch_kwargs"].pop("stem_pool")
    assert list(build_from_spec(old_spec).state_dict()) == list(EmotionVGG(widths=(8, 16, 16), fc=32).state_dict())
    with pytest.raises(ValueError, match="stem_pool"):
        EmotionVGG(stem_pool=0)
    with pytest.raises(ValueError, match="below one pixel"):
        EmotionVGG(widths=(8,) * 4, stem_pool=4)


def test_tta_views_average_and_tencrop_crops_within_the_face():
    from emotion.models.module import EmotionModule
    from emotion.models.tta import five_crops

    torch.manual_seed(0)
    module = EmotionModule(EmotionCNN().eval()).eval()
    flat = torch.full((2, 1, 48, 48), 128, dtype=torch.uint8)
    with torch.no_grad():
        # a uniform face looks the same in every crop and mirror: every TTA gives the plain prediction
        plain = module.predict_proba(flat, tta="none")
        for tta in ("flip", "tencrop"):
            assert torch.allclose(module.predict_proba(flat, tta=tta), plain, atol=1e-6)
        x = torch.randint(0, 256, (3, 1, 48, 48), dtype=torch.uint8)
        probs = {tta: module.predict_proba(x, tta=tta) for tta in ("none", "flip", "tencrop")}
    assert all(torch.allclose(p.sum(1), torch.ones(3)) for p in probs.values())
    assert not torch.allclose(probs["tencrop"], probs["flip"])
    crops = five_crops(x)
    assert len(crops) == 5 and all(c.shape == (3, 1, 48, 48) for c in crops)
    # the top-left crop starts at the top-left pixel
    assert abs(float(crops[0][0, 0, 0, 0]) - float(x[0, 0, 0, 0]) / 255) < 0.05
    with pytest.raises(ValueError, match="tta must be one of"):
        EmotionModule(EmotionCNN(), tta="twelvecrop")


def test_distillation_loss_is_the_temperature_scaled_kl_divergence():
    from emotion.models.distill import distillation_loss

    torch.manual_seed(0)
    student, teacher = torch.randn(5, 7), torch.randn(5, 7) * 3
    for t in (1.0, 4.0):
        p, q = torch.softmax(teacher / t, 1), torch.softmax(student / t, 1)
        expected = (p * (p.log() - q.log())).sum(1).mean() * t * t
        assert torch.allclose(distillation_loss(student, teacher, t), expected, atol=1e-6)
    assert float(distillation_loss(teacher, teacher, 4.0)) == pytest.approx(0.0, abs=1e-6)
    # the gradient pulls the student's softened distribution towards the teacher's
    s = student.clone().requires_grad_(True)
    distillation_loss(s, teacher, 2.0).backward()
    stepped = s.detach() - 0.5 * s.grad
    assert distillation_loss(stepped, teacher, 2.0) < distillation_loss(student, teacher, 2.0)


def test_loss_and_distillation_settings_are_checked_and_travel_as_plain_hparams():
    from emotion.errors import UserError
    from emotion.models.distill import Distillation
    from emotion.models.module import EmotionModule

    with pytest.raises(ValueError, match=r"model.distill.alpha must be in \[0, 1\]"):
        EmotionModule(EmotionCNN(), distill={"alpha": 2})
    with pytest.raises(ValueError, match="model.distill.temperature must be > 0"):
        Distillation(temperature=0)
    with pytest.raises(UserError, match="model.distill.teacher: '/nowhere.ckpt' is neither"):
        Distillation(teacher="/nowhere.ckpt")
    with pytest.raises(ValueError, match=r"model.loss.label_smoothing must be in \[0, 1\)"):
        EmotionModule(EmotionCNN(), loss={"label_smoothing": 1.0})
    with pytest.raises(ValueError, match="model.loss.class_weighting must be null, inverse or sqrt_inverse"):
        EmotionModule(EmotionCNN(), loss={"class_weighting": "balanced"})
    module = EmotionModule(EmotionCNN(), loss={"label_smoothing": 0.1}, distill={"temperature": 2.0})
    assert module.loss_config.label_smoothing == 0.1 and module.distill.temperature == 2.0
    # plain values only: a checkpoint's hyperparameters load with weights_only=True
    assert module.hparams["loss"] == {"label_smoothing": 0.1, "class_weighting": None}
    assert module.hparams["distill"] == {
        "teacher": None,
        "alpha": 0.5,
        "temperature": 2.0,
        "drop_labels_below": 0.0,
        "precompute": False,
        "reuse_outputs": False,
        "fresh_views": True,
    }


def test_a_list_of_teachers_distils_from_their_averaged_probabilities(tmp_path):
    """``model.distill.teacher=[A,B]`` is the ensemble ``emotion.export 'ckpt_path=[A,B]'`` would write, built at the
    start of the fit: the same probabilities, no ensemble file to make or ship."""
    import torch.nn.functional as F

    from emotion.errors import UserError
    from emotion.models import EmotionVGG
    from emotion.models.checkpoint import load_net, save_safetensors
    from emotion.models.distill import Distillation
    from emotion.models.module import EmotionModule

    torch.manual_seed(0)
    files = [
        str(save_safetensors(net.eval(), tmp_path / f"t{i}.safetensors"))
        for i, net in enumerate([EmotionCNN(), EmotionVGG(widths=(8, 16, 32, 64))])
    ]
    distill = Distillation(teacher=files)  # Hydra hands over a ListConfig: any sequence
    assert distill.teachers == tuple(files)
    teacher = distill.load_teacher(EmotionCNN().class_names)
    x = torch.randint(0, 256, (4, 1, 48, 48), dtype=torch.uint8)
    members = [load_net(f) for f in files]
    expected = torch.stack([m.probabilities(m(x)) for m in members]).mean(0)
    with torch.no_grad():
        assert torch.allclose(F.softmax(teacher(x), 1), expected, atol=1e-6)
        # not one member's: both enter the average
        assert not torch.allclose(expected, members[0].probabilities(members[0](x)), atol=1e-3)
    assert not any(p.requires_grad for p in teacher.parameters()) and not teacher.training
    # one listed model is that model; the list travels in the checkpoint as plain values
    assert Distillation(teacher=files[:1]).teacher == files[0]
    module = EmotionModule(EmotionCNN(), distill={"teacher": files})
    assert module.hparams["distill"]["teacher"] == tuple(files)
    with pytest.raises(UserError, match="model.distill.teacher: '/nowhere.ckpt' is neither"):
        Distillation(teacher=[files[0], "/nowhere.ckpt"])
    with pytest.raises(UserError, match="model.distill.teacher: an empty list"):
        Distillation(teacher=[])
    small = EmotionVGG(widths=(8, 16, 32, 64), input_size=40).eval()
    other_size = str(save_safetensors(small, tmp_path / "t40.safetensors"))
    with pytest.raises(UserError, match=r"model.distill.teacher \[.*t40.safetensors'\]: .*same classes and input size"):
        Distillation(teacher=[files[0], other_size]).load_teacher(EmotionCNN().class_names)


def test_the_hard_label_loss_of_the_faces_kept_is_the_plain_loss_when_all_are_kept():
    from emotion.models.loss import LossConfig

    torch.manual_seed(0)
    logits, y = torch.randn(6, 7, requires_grad=True), torch.tensor([0, 1, 2, 3, 4, 6])
    soft = torch.softmax(torch.randn(6, 7), 1)
    weight = torch.rand(7) + 0.5
    for cfg in (LossConfig(), LossConfig(label_smoothing=0.1)):
        for target, w in ((y, None), (y, weight), (soft, None), (soft, weight)):
            everyone = torch.ones(6, dtype=torch.bool)
            assert torch.allclose(cfg(logits, target, w, kept=everyone), cfg(logits, target, w), atol=1e-6)
    # a face not kept adds nothing to the loss nor to its gradient; the denominator stays the batch's
    kept = torch.tensor([True, True, False, True, True, True])
    LossConfig()(logits, y, kept=kept).backward()
    assert torch.all(logits.grad[2] == 0) and torch.all(logits.grad[0] != 0)
    each = torch.nn.functional.cross_entropy(logits, y, reduction="none")
    assert torch.allclose(LossConfig()(logits, y, kept=kept), each[kept].sum() / 6)


def test_drop_labels_below_drops_the_labels_the_teacher_doubts_and_needs_a_teacher(tmp_path):
    from emotion.errors import UserError
    from emotion.models.checkpoint import save_safetensors
    from emotion.models.distill import Distillation
    from emotion.models.module import EmotionModule

    teacher_file = str(save_safetensors(EmotionCNN().eval(), tmp_path / "t.safetensors"))
    # the teacher's probabilities of each class: face 0 says class 0 (0.9), face 1 is unsure (uniform)
    logits = torch.log(torch.tensor([[0.9] + [0.1 / 6] * 6, [1 / 7] * 7]))
    labels = torch.tensor([0, 3])
    assert Distillation(teacher=teacher_file).labels_kept(logits, labels) is None  # 0: every label kept
    doubt = Distillation(teacher=teacher_file, drop_labels_below=0.1)
    assert doubt.labels_kept(logits, labels).tolist() == [True, True]
    assert doubt.labels_kept(logits, torch.tensor([1, 3])).tolist() == [False, True]  # 0.017 < 0.1 <= 0.143
    mixed = torch.tensor([[0.5, 0.5] + [0.0] * 5, [0.0] * 6 + [1.0]])  # a mixed batch's class probabilities
    assert doubt.labels_kept(logits, mixed).tolist() == [True, True]  # 0.5·0.9 + 0.5·0.017; 0.143
    assert Distillation(teacher=teacher_file, drop_labels_below=0.5).labels_kept(logits, mixed).tolist() == [
        False,
        False,
    ]
    with pytest.raises(UserError, match="drop_labels_below=0.2 needs a teacher"):
        Distillation(drop_labels_below=0.2)
    with pytest.raises(ValueError, match=r"model.distill.drop_labels_below must be in \[0, 1\]"):
        Distillation(teacher=teacher_file, drop_labels_below=1.5)

    # the knob moves the training loss: a teacher that doubts every label leaves the soft term alone
    torch.manual_seed(0)
    x, y = torch.randint(0, 256, (8, 1, 48, 48), dtype=torch.uint8), torch.randint(0, 7, (8,))
    losses = {}
    for below in (0.0, 1.0):
        torch.manual_seed(1)
        module = EmotionModule(EmotionCNN(), distill={"teacher": teacher_file, "drop_labels_below": below})
        module.on_fit_start()
        module.log = lambda *a, **k: None
        module.eval()  # dropout off: the check below repeats the student's forward pass
        losses[below] = module.training_step((x, y), 0).detach().item()
        soft = module.distill.combine(torch.tensor(0.0), module(x), module._teacher_logits)[0].detach().item()
    assert losses[0.0] != pytest.approx(losses[1.0])
    assert losses[1.0] == pytest.approx(soft, rel=1e-5)  # every label dropped: alpha · T² · KL only


def test_class_weights_favour_rare_classes_and_keep_the_total_weight():
    from emotion.models.loss import LossConfig

    counts = torch.tensor([100.0, 10.0, 50.0])
    assert LossConfig().class_weights(counts) is None
    inverse = LossConfig(class_weighting="inverse").class_weights(counts)
    root = LossConfig(class_weighting="sqrt_inverse").class_weights(counts)
    for w in (inverse, root):
        assert float((w * counts).sum()) == pytest.approx(float(counts.sum()))
    assert float(inverse[1] / inverse[0]) == pytest.approx(10.0)
    assert float(root[1] / root[0]) == pytest.approx(10.0**0.5)


def test_the_loss_takes_class_indices_or_class_probabilities():
    from emotion.models.loss import LossConfig

    torch.manual_seed(0)
    logits, y = torch.randn(6, 7), torch.randint(0, 7, (6,))
    loss = LossConfig(label_smoothing=0.1)
    one_hot = torch.nn.functional.one_hot(y, 7).float()
    assert torch.allclose(loss(logits, y), loss(logits, one_hot), atol=1e-6)
    assert not torch.allclose(loss(logits, y), LossConfig()(logits, y))


def test_ensemble_refuses_members_that_do_not_fit_together():
    from emotion.models import EmotionEnsemble, EmotionVGG

    a = EmotionVGG(widths=(8, 16), fc=16)
    with pytest.raises(ValueError, match="at least two"):
        EmotionEnsemble.of([a])
    other = EmotionVGG(widths=(8, 16), fc=16, class_names=("happy", "sad"))
    with pytest.raises(ValueError, match="member 1 predicts"):
        EmotionEnsemble.of([a, other])
