"""Safe loading: no model file can run code; mismatched or damaged files give clear errors."""

import json
import os

import lightning as L
import pytest
import torch

from emotion.errors import ModelFileError
from emotion.models import EmotionCNN
from emotion.models.checkpoint import CHECKPOINT_SPEC_KEY, load_net, read_checkpoint, save_safetensors
from emotion.train import train
from tests.conftest import TINY, make_cfg


class Payload:
    """Unpickling this would create a file: the proof that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_payload_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, CHECKPOINT_SPEC_KEY: {}, "x": Payload(marker)}, evil)
    with pytest.raises(ModelFileError, match="refused to load"):
        read_checkpoint(evil)
    with pytest.raises(ModelFileError, match="refused to load") as refusal:
        load_net(evil)
    assert not marker.exists()
    assert "posix.system" in str(refusal.value) and "weights_only" not in str(refusal.value)  # no unsafe advice


def _fake_ckpt(path, net):
    state = {f"net.{k}": v for k, v in net.state_dict().items()}
    ckpt = {"state_dict": state, CHECKPOINT_SPEC_KEY: net.spec(), "pytorch-lightning_version": L.__version__}
    torch.save({**ckpt, "epoch": 0, "global_step": 0, "optimizer_states": []}, path)  # what a resume expects
    return path


def test_class_count_mismatch_names_the_mismatch(tmp_path):
    ckpt = _fake_ckpt(tmp_path / "two.ckpt", EmotionCNN(class_names=("happy", "sad")))
    cfg = make_cfg(tmp_path, [*TINY, f"ckpt_path={ckpt}"])
    with pytest.raises(ModelFileError, match=r"class_names is \['happy', 'sad'\] in the file"):
        train(cfg)


def test_resuming_with_another_input_scaling_is_refused_and_says_how_to_continue(tmp_path):
    ckpt = _fake_ckpt(tmp_path / "per_face.ckpt", EmotionCNN(input_norm="per_face"))
    cfg = make_cfg(tmp_path, [*TINY, f"ckpt_path={ckpt}"])  # the configured network scales by the dataset
    with pytest.raises(
        ModelFileError, match=r"input_norm is 'per_face' in the file but 'dataset'.*input_norm=per_face"
    ):
        train(cfg)


def test_other_architecture_in_spec_is_a_clear_error(tmp_path):
    net = EmotionCNN()
    spec = net.spec() | {"arch": "resnet_ghost"}
    torch.save({"state_dict": {}, CHECKPOINT_SPEC_KEY: spec}, tmp_path / "x.ckpt")
    with pytest.raises(ModelFileError, match="unknown architecture 'resnet_ghost'"):
        load_net(tmp_path / "x.ckpt")


def test_weights_of_other_shapes_are_a_clear_error(tmp_path):
    net = EmotionCNN(class_names=("happy", "sad"))
    state = {f"net.{k}": v for k, v in net.state_dict().items()}
    torch.save({"state_dict": state, CHECKPOINT_SPEC_KEY: EmotionCNN().spec()}, tmp_path / "x.ckpt")
    with pytest.raises(ModelFileError, match="weights do not match architecture 'emotion_cnn'"):
        load_net(tmp_path / "x.ckpt")


def test_damaged_and_foreign_files(tmp_path):
    good = _fake_ckpt(tmp_path / "good.ckpt", EmotionCNN())
    (tmp_path / "cut.ckpt").write_bytes(good.read_bytes()[:1000])
    (tmp_path / "random.ckpt").write_bytes(os.urandom(1000))
    for name in ("cut.ckpt", "random.ckpt"):
        with pytest.raises(ModelFileError, match="is not a PyTorch checkpoint .* is the file complete"):
            load_net(tmp_path / name)
    torch.save({"state_dict": {}}, tmp_path / "foreign.ckpt")
    with pytest.raises(ModelFileError, match="not an emotion checkpoint"):
        load_net(tmp_path / "foreign.ckpt")
    with pytest.raises(ModelFileError, match="not found"):
        load_net(tmp_path / "missing.ckpt")
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(ModelFileError, match="not a readable safetensors"):
        load_net(tmp_path / "bad.safetensors")


def test_safetensors_round_trip_keeps_spec_and_outputs(tmp_path):
    net = EmotionCNN(mean=0.3, std=0.3).eval()
    loaded = load_net(save_safetensors(net, tmp_path / "m.safetensors"))
    x = torch.rand(2, 1, 48, 48)
    assert torch.equal(loaded(x), net(x))
    assert loaded.spec() == net.spec()


def test_a_saved_model_file_gets_the_mode_of_any_new_file_not_a_private_one(tmp_path):
    """safetensors' own writer leaves 0600 files: a model exported to share (or shipped) would be unreadable to
    others. save_safetensors writes it as any new file is written (0644 under umask 022)."""
    old = os.umask(0o022)
    try:
        path = save_safetensors(EmotionCNN().eval(), tmp_path / "shared" / "m.safetensors")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def test_files_from_the_sharpness_matching_era_load_only_if_they_did_not_blur(tmp_path):
    """Retired spec keys: a network that blurred its inputs (trained on the blurred FER2013 copy) is refused with
    what to do; one trained with matching off loads and predicts as before."""
    from safetensors.torch import save_file

    net = EmotionCNN().eval()
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    for target, name in ((0.0, "off"), (1.4e-4, "on")):
        spec = {**net.spec(), "sharpness": target, "sharpness_sigmas": [3.0], "sharpness_round": True}
        save_file(state, str(tmp_path / f"{name}.safetensors"), metadata={"emotion_spec": json.dumps(spec)})
    x = torch.rand(2, 1, 48, 48)
    assert torch.equal(load_net(tmp_path / "off.safetensors")(x), net(x))
    with pytest.raises(ModelFileError, match="blurs its inputs .* retrain"):
        load_net(tmp_path / "on.safetensors")


def test_the_best_validation_accuracy_so_far_survives_a_resume():
    from emotion.models.module import EmotionModule

    before = EmotionModule(EmotionCNN())
    for acc in (0.8, 0.6):  # two epochs' val/acc; the better one came first
        before.val_acc_best(torch.tensor(acc))
    checkpoint: dict = {}
    before.on_save_checkpoint(checkpoint)
    resumed = EmotionModule(EmotionCNN())
    resumed.on_load_checkpoint(checkpoint)
    resumed.val_acc_best(torch.tensor(0.7))  # the first epoch after the resume
    assert float(resumed.val_acc_best.compute()) == pytest.approx(0.8)

    older = {CHECKPOINT_SPEC_KEY: checkpoint[CHECKPOINT_SPEC_KEY]}  # a file written before it was kept
    resumed.on_load_checkpoint(older)
    assert resumed.val_acc_best.update_count == 0  # nothing known: it starts again, as before


def test_a_resume_in_another_precision_is_warned_about_and_counted(caplog):
    """``trainer.precision`` follows the hardware where a config leaves it to ``${bf16_where_native:...}``: a run
    started in bf16 on one machine and resumed on another without native bf16 went on in float32 unannounced."""
    from types import SimpleNamespace

    from emotion.training import callbacks
    from emotion.training.runs import epochs_by_precision

    fit = SimpleNamespace(state=SimpleNamespace(fn="fit"))
    started = callbacks.ResumeCheck({"trainer.precision": "bf16-mixed", "seed": 42})
    checkpoint = {"epoch": 1}  # saved after epoch 2 (0-based 1)
    started.on_save_checkpoint(fit, None, checkpoint)
    with caplog.at_level("WARNING", logger="emotion.training.callbacks"):
        callbacks.ResumeCheck({"trainer.precision": "bf16-mixed", "seed": 42}).on_load_checkpoint(fit, None, checkpoint)
        assert not caplog.text  # the same settings: nothing to say
        resumed = callbacks.ResumeCheck({"trainer.precision": "32-true", "seed": 42})
        resumed.on_load_checkpoint(fit, None, checkpoint)
    assert "from epoch 3 on: trainer.precision 'bf16-mixed' -> '32-true'" in caplog.text
    assert "resume with trainer.precision=bf16-mixed" in caplog.text and "NOT" not in caplog.text
    assert resumed.changes == [{"from_epoch": 3, "settings": {"trainer.precision": ["bf16-mixed", "32-true"]}}]
    caplog.clear()
    test = SimpleNamespace(state=SimpleNamespace(fn="test"))  # scoring a checkpoint resumes nothing
    with caplog.at_level("WARNING", logger="emotion.training.callbacks"):
        callbacks.ResumeCheck({"trainer.precision": "32-true"}).on_load_checkpoint(test, None, checkpoint)
    assert not caplog.text
    rows = [{"epoch": 1}, {"epoch": 2, "precision": "bf16-mixed"}, {"epoch": 3, "precision": "32-true"}]
    assert epochs_by_precision(rows) == {"unknown": 1, "bf16-mixed": 1, "32-true": 1}  # rows from before it was kept


def test_the_history_keeps_counting_wall_and_cpu_time_across_a_resume(monkeypatch):
    """``elapsed_s`` and ``cpu_s`` are cumulative over every segment of a resumed run; a pause (the process stopped)
    adds wall time only. A checkpoint from before ``cpu_s`` existed starts that count at 0."""
    from emotion.training import callbacks

    wall, cpu = [100.0], [10.0]
    monkeypatch.setattr(callbacks.time, "perf_counter", lambda: wall[0])
    monkeypatch.setattr(callbacks.time, "process_time", lambda: cpu[0])
    first = callbacks.MetricsHistory()
    first.on_fit_start(None, None)
    wall[0] += 60.0  # an epoch of work: 60 s of wall, 110 s of CPU on two threads
    cpu[0] += 110.0
    wall[0] += 300.0  # then stopped (kill -STOP) for 5 minutes
    assert (first.elapsed(), first.cpu()) == (360.0, 110.0)
    state = first.state_dict()

    wall[0], cpu[0] = 5.0, 2.0  # a new process: its clocks start elsewhere
    resumed = callbacks.MetricsHistory()
    resumed.load_state_dict(state)
    resumed.on_fit_start(None, None)
    wall[0] += 60.0
    cpu[0] += 115.0
    assert (resumed.elapsed(), resumed.cpu()) == (420.0, 225.0)

    older = callbacks.MetricsHistory()
    older.load_state_dict({"history": [], "elapsed": 360.0})
    older.on_fit_start(None, None)
    cpu[0] += 50.0
    assert older.cpu() == 50.0 and older.elapsed() == 360.0
