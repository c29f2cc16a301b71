"""The training loop end to end on tiny synthetic data: outputs, resume, SIGINT, evaluation."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hnf.data.synth import write_synthetic_dataset
from hnf.errors import HnfError
from hnf.train.evaluate import evaluate_checkpoint
from hnf.models import create_model
from hnf.train.loop import TrainConfig, lr_factor, param_groups, train


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_dataset(tmp_path_factory.mktemp("synth") / "data", per_class=6, size=80, seed=3)


def _config(data: Path, out: Path, epochs: int) -> TrainConfig:
    return TrainConfig(
        data=str(data), out=str(out), model="resnet18", epochs=epochs, batch_size=8, img_size=64, resize=72,
        lr=2e-3, val_fraction=0.2, precision="fp32",
    )


def _weights(run: Path) -> dict[str, torch.Tensor]:
    meta = json.loads((run / "checkpoint" / "checkpoint.json").read_text())
    return load_file(run / "checkpoint" / meta["weights"])


def test_run_writes_documented_outputs_and_resume_matches_uninterrupted(tiny_data: Path, tmp_path: Path) -> None:
    torch.set_num_threads(2)
    straight = train(_config(tiny_data, tmp_path / "straight", epochs=2))
    assert straight.epochs_done == 2 and not straight.interrupted
    run = tmp_path / "straight"
    for name in ("config.json", "split.json", "metrics.jsonl", "metrics.json", "curves.png", "confusion.png", "confusion.json"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics) >= {"top1", "macro_f1", "per_class_recall", "confusion_matrix", "classes", "top5"}
    assert sum(map(sum, metrics["confusion_matrix"])) == metrics["images"]
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2

    first = train(replace(_config(tiny_data, tmp_path / "resumed", epochs=1), tta_views=8))
    assert first.epochs_done == 1
    resumed = train(_config(tiny_data, tmp_path / "resumed", epochs=2), resume=True)  # the saved config's views
    assert resumed.epochs_done == 2
    a, b = _weights(run), _weights(tmp_path / "resumed")
    assert all(torch.equal(a[k], b[k]) for k in a)
    # the same weights: the test side's plain scores agree; the averaged ones come beside them
    assert metrics["tta_views"] == 1 and resumed.metrics["tta_views"] == 8
    assert resumed.metrics["identity_top1"] == metrics["top1"]
    with pytest.raises(HnfError, match="views must be one of"):
        train(replace(_config(tiny_data, tmp_path / "bad_views", epochs=1), tta_views=5))
    assert not (tmp_path / "bad_views" / "checkpoint").exists()

    with pytest.raises(HnfError, match="already holds a run; pass --resume"):
        train(_config(tiny_data, run, epochs=2))

    scored = evaluate_checkpoint(run / "checkpoint", tiny_data, run / "split.json")
    assert scored["images"] == metrics["images"]
    assert scored["top1"] == pytest.approx(metrics["top1"])


def test_sigint_finishes_the_step_writes_a_checkpoint_and_resumes(tiny_data: Path, tmp_path: Path) -> None:
    def interrupt_during_second_epoch() -> None:
        while not (tmp_path / "run" / "metrics.jsonl").exists():
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)

    sender = threading.Thread(target=interrupt_during_second_epoch)
    sender.start()
    stopped = train(_config(tiny_data, tmp_path / "run", epochs=3))
    sender.join()
    assert stopped.interrupted
    meta = json.loads((tmp_path / "run" / "checkpoint" / "checkpoint.json").read_text())
    assert stopped.epochs_done == 1 and meta["step"] > 4 and meta["train_state"]
    finished = train(_config(tiny_data, tmp_path / "run", epochs=3), resume=True)
    assert finished.epochs_done == 3 and not finished.interrupted
    steps = [json.loads(line)["step"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and len(steps) == 3


def test_evaluate_refuses_foreign_classes(tiny_data: Path, tmp_path: Path) -> None:
    train(_config(tiny_data, tmp_path / "run", epochs=1))
    other = tmp_path / "other"
    (other / "Graphene").mkdir(parents=True)
    (other / "Graphene" / "x.png").write_bytes((tiny_data / "Fibres" / "fibres_00000.png").read_bytes())
    with pytest.raises(HnfError, match=r"class\(es\) Graphene not among the checkpoint's classes"):
        evaluate_checkpoint(tmp_path / "run" / "checkpoint", other)


def test_lr_schedule_warms_up_then_decays() -> None:
    values = [lr_factor(step, 10, 100) for step in range(100)]
    assert values[0] == pytest.approx(0.1) and values[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(values[9:], values[10:]))
    assert values[-1] < 0.01


@pytest.mark.parametrize(("budget", "expected"), [(1e-3, 1), (1e6, 3)])
def test_a_time_budget_fixes_the_epochs_after_the_warm_up_and_resume_keeps_them(
    tiny_data: Path, tmp_path: Path, budget: float, expected: int
) -> None:
    """Far too small a budget ends the run after the warm-up epoch; an ample one runs --epochs.
    Either way config.json, the log and the result agree, and --resume does not lengthen it."""
    run = tmp_path / "run"
    result = train(replace(_config(tiny_data, run, epochs=3), time_budget_s=budget))
    saved = json.loads((run / "config.json").read_text())
    assert result.epochs_done == expected and saved["epochs"] == expected
    assert saved["time_budget_s"] == budget
    log = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [record["epoch"] for record in log] == list(range(1, expected + 1))
    if expected > 1:  # (one epoch is all warm-up) the cosine decay ended at the decided length
        assert log[-1]["lr"] < 0.05 * 2e-3
    assert train(_config(tiny_data, run, epochs=6), resume=True).epochs_done == expected


def test_weight_decay_spares_biases_norms_positions_and_queries() -> None:
    model = create_model("hnf_small", scales=[16, 28], img_size=112)
    decay, no_decay = param_groups(model, 0.05)
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    spared = {names[id(p)] for p in no_decay["params"]}
    decayed = {names[id(p)] for p in decay["params"]}
    assert {"layers.0.patch_embed.pos", "layers.1.patch_embed.pos", "readout.0.query", "head.0.weight",
            "head.2.bias"} <= spared
    assert {"layers.0.patch_embed.proj.weight", "head.2.weight", "readout.0.kv.weight"} <= decayed
    assert len(spared) + len(decayed) == len(names)


class _HungryModel(torch.nn.Module):
    """A classifier whose activations need 2**40 bytes per image: the real CPU allocator refuses."""

    def __init__(self) -> None:
        super().__init__()
        self.head = torch.nn.Linear(1, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activations = x.new_empty(x.shape[0] * 2**40, dtype=torch.uint8)
        return self.head(x.mean(dim=(1, 2, 3))[:, None]) + activations[:1].float()


def test_a_batch_that_does_not_fit_in_memory_gives_a_clear_error(
    tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("hnf.train.loop.build_classifier", lambda *args, **kwargs: _HungryModel())
    with pytest.raises(HnfError) as caught:
        train(_config(tiny_data, tmp_path / "run", epochs=1))
    assert str(caught.value).startswith(
        "batch size 8 of resnet18 at 64x64 does not fit in the memory of cpu (")
    assert "can't allocate memory" in str(caught.value)
    assert str(caught.value).endswith("start again with a smaller --batch-size, e.g. 4, or a smaller --img-size.")


def test_sigkill_loses_at_most_the_epoch_in_progress(tiny_data: Path, tmp_path: Path) -> None:
    """A real `hnf train` process killed with SIGKILL after its first epoch resumes from that
    epoch's checkpoint and finishes with one log record per epoch."""
    import subprocess
    import sys

    run = tmp_path / "run"
    command = [sys.executable, "-m", "hnf", "train", "--data", str(tiny_data), "--model", "resnet18",
               "--epochs", "4", "--batch-size", "8", "--img-size", "64", "--lr", "2e-3",
               "--val-fraction", "0.2", "--precision", "fp32", "--out", str(run)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = run / "checkpoint" / "checkpoint.json"
    deadline = time.monotonic() + 240
    while not (checkpoint.exists() and json.loads(checkpoint.read_text())["epoch"] >= 1):
        assert process.poll() is None and time.monotonic() < deadline, "training ended before the kill"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = json.loads(checkpoint.read_text())["epoch"]
    assert 1 <= killed_at < 4
    resumed = subprocess.run([*command, "--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"resuming at epoch {killed_at + 1}" in resumed.stdout
    epochs = [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3, 4]
    assert json.loads((run / "metrics.json").read_text())["epochs"] == 4


def test_resume_drops_log_records_of_an_epoch_without_checkpoint(tmp_path: Path) -> None:
    from hnf.train.loop import keep_epochs_up_to

    log = tmp_path / "metrics.jsonl"
    log.write_text("".join(json.dumps({"epoch": e, "step": 3 * e}) + "\n" for e in (1, 2, 3)))
    keep_epochs_up_to(log, 2)
    assert [json.loads(line)["epoch"] for line in log.read_text().splitlines()] == [1, 2]


def test_train_cli_passes_the_optimisation_options_and_clip_zero_means_no_clipping(tiny_data: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from hnf.cli import app

    torch.set_num_threads(2)
    args = ["train", "--data", str(tiny_data), "--model", "resnet18", "--epochs", "1", "--batch-size", "8",
            "--img-size", "64", "--lr", "2e-3", "--val-fraction", "0.2", "--precision", "fp32",
            "--weight-decay", "0", "--warmup-epochs", "0.5", "--label-smoothing", "0", "--grad-clip", "0",
            "--out", str(tmp_path / "cli")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "cli" / "config.json").read_text())
    assert (saved["weight_decay"], saved["warmup_epochs"], saved["label_smoothing"], saved["grad_clip"]) == (0, 0.5, 0, 0)
    unclipped = TrainConfig(**{**saved, "out": str(tmp_path / "unclipped"), "grad_clip": 1e12})
    train(unclipped)
    a, b = _weights(tmp_path / "cli"), _weights(tmp_path / "unclipped")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_the_median_short_side_is_measured_above_the_information_band(tmp_path: Path) -> None:
    import csv
    import statistics

    from hnf.train.data import readable_dataset

    data = write_synthetic_dataset(tmp_path / "banded", per_class=2, size=64, seed=5, band_prob=1.0)
    with open(data / "labels.csv") as f:
        tops = [int(row["band_top"]) for row in csv.DictReader(f)]
    measured = readable_dataset(data).median_short_side
    assert measured < 64
    assert abs(measured - statistics.median(tops)) <= 4


def test_a_crop_size_that_enlarges_the_images_gets_a_warning_with_a_size_that_does_not() -> None:
    from hnf.train.data import upsampling_warning

    assert upsampling_warning(200, 224, 256) == (
        "--img-size 224 resizes the images to a short side of 256 px, but half of them are at most 200 px: "
        "they are enlarged x1.28, which costs accuracy (on 200 px neu-surface images resnet18 lost 11 to 16 "
        "points at 192-224 px against 112 px); --img-size 168 keeps them at their own resolution or below"
    )
    assert upsampling_warning(200, 168, 192) is None
    assert upsampling_warning(128, 112, 128) is None  # the demo's images
    assert upsampling_warning(60, 112, 128).endswith("against 112 px)")  # no multiple of 56 fits
    # a trunk takes multiples of its coarsest stride: the demo's trunk model at 128 px
    assert upsampling_warning(128, 128, 146, crop_multiple=32).endswith("--img-size 96 keeps them at their own "
                                                                        "resolution or below")


def test_the_crop_multiple_is_the_trunks_coarsest_stride() -> None:
    from hnf.models.registry import trunk_crop_multiple

    assert trunk_crop_multiple("hnf_llm_lite0") == 32
    assert trunk_crop_multiple("hnf_llm_lite0", {"scales": [8, 16]}) == 16
    assert trunk_crop_multiple("hnf_small") is None
    assert trunk_crop_multiple("resnet18") is None


def test_train_warns_when_it_enlarges_the_images(tiny_data: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from hnf.cli import app

    args = ["train", "--data", str(tiny_data), "--model", "resnet18", "--epochs", "1", "--batch-size", "8",
            "--img-size", "96", "--precision", "fp32", "--out", str(tmp_path / "run")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert "warning: --img-size 96 resizes the images to a short side of 110 px, but half of them are at most 80 px" in output
    assert "--img-size 56 keeps them at their own resolution or below" in output


def test_compiled_training_matches_eager_and_saves_plain_weights(tiny_data: Path, tmp_path: Path) -> None:
    """``compile=True`` trains the same model (up to the fused kernels' rounding) and its
    checkpoint has the eager model's parameter names, so evaluation and prediction take it."""
    torch.set_num_threads(2)
    tiny = dict(embed_dim=32, num_heads=2, readout_heads=2, scales=[16, 32], ode_method="euler")
    runs = {}
    for compiled in (False, True):
        config = replace(_config(tiny_data, tmp_path / f"compile_{compiled}", epochs=1), model="hnf_small",
                         model_overrides=tiny, compile=compiled)
        runs[compiled] = train(config)
    eager, compiled = _weights(tmp_path / "compile_False"), _weights(tmp_path / "compile_True")
    assert eager.keys() == compiled.keys()
    for name in eager:
        torch.testing.assert_close(compiled[name], eager[name], atol=1e-4, rtol=1e-3, msg=name)
    scored = evaluate_checkpoint(tmp_path / "compile_True" / "checkpoint", tiny_data, tmp_path / "compile_True" / "split.json")
    assert scored["top1"] == pytest.approx(runs[True].metrics["top1"])


def test_pretrained_trunk_run_resumes_exactly_through_its_frozen_warm_up(tiny_data: Path, tmp_path: Path) -> None:
    """hnf_llm_lite0 end to end: the trunk frozen for the first epoch, at a tenth of the learning
    rate after it; the run stopped after epoch 1 and resumed ends with the uninterrupted weights."""
    torch.set_num_threads(2)
    tiny = {"embed_dim": 48, "num_heads": 2, "readout_heads": 2, "fusion_heads": 2}

    def config(out: Path, epochs: int) -> TrainConfig:
        return replace(_config(tiny_data, out, epochs), model="hnf_llm_lite0", model_overrides=tiny,
                       trunk_frozen_epochs=1, trunk_lr_factor=0.1)

    straight = train(config(tmp_path / "straight", 2))
    train(config(tmp_path / "resumed", 1))
    frozen_epoch = _weights(tmp_path / "resumed")
    initial = create_model("hnf_llm_lite0", num_classes=10, img_size=64, class_names=straight.metrics["classes"], **tiny)
    stem = "backbone.trunk.body.conv_stem.weight"
    frozen = load_file(next((tmp_path / "resumed" / "checkpoint").glob("frozen-*.safetensors")))
    assert stem not in frozen_epoch and torch.equal(frozen[stem], initial.state_dict()[stem])  # untouched in epoch 1
    train(config(tmp_path / "resumed", 2), resume=True)
    a, b = _weights(tmp_path / "straight"), _weights(tmp_path / "resumed")
    assert stem in a and not torch.equal(a[stem], initial.state_dict()[stem])  # learning in epoch 2
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    meta = json.loads((tmp_path / "straight" / "checkpoint" / "checkpoint.json").read_text())
    assert meta["preprocessing"]["normalisation"] == "fixed" and meta["preprocessing"]["std"] == 0.5
    log = [json.loads(line) for line in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    assert len(log) == 2


def test_small_classes_are_warned_about_and_a_class_without_test_images_leaves_macro_f1(tmp_path: Path) -> None:
    import numpy as np

    from hnf.data.dataset import Sample
    from hnf.data.splits import Split
    from hnf.train.data import RunData, class_count_warnings
    from hnf.train.evaluate import score

    def samples(label: str, count: int) -> list[Sample]:
        return [Sample(tmp_path / f"{label}{i}.png", label) for i in range(count)]

    run = RunData(["a", "b", "c"], samples("a", 4) + samples("b", 1), samples("a", 1), samples("a", 2) + samples("c", 2),
                  Split("train_test", 0, ["a", "b", "c"], []), [], 100)
    assert class_count_warnings(run) == [
        "class 'b' has a single image: it cannot be both learned and tested; add images or leave the class out",
        "class 'c' has no training image in this split: the model cannot learn it",
    ]
    probs = np.array([[0.9, 0.05, 0.05], [0.9, 0.05, 0.05], [0.1, 0.1, 0.8], [0.8, 0.1, 0.1]])
    metrics = score(probs, np.array([0, 0, 2, 2]), ["a", "b", "c"])
    assert metrics["classes_without_images"] == ["b"]
    assert metrics["per_class_recall"] == {"a": 1.0, "b": None, "c": 0.5}
    # macro-F1 over a and c only: F1(a) = 2 * (2/3 * 1) / (2/3 + 1) = 0.8, F1(c) = 2/3
    assert metrics["macro_f1"] == pytest.approx((0.8 + 2 / 3) / 2)


def test_the_balance_regulariser_evens_out_the_experts_use(tiny_data: Path, tmp_path: Path) -> None:
    """With --balance-weight the gate's mean expert weights move towards uniform: their entropy
    over the validation images is higher than without it, from the same start and batches."""
    from hnf.train.checkpoint import load_checkpoint
    from hnf.train.data import prepare_run_data
    from hnf.data.torch_dataset import MicrographDataset
    from hnf.data.transforms import build_eval_transform

    torch.set_num_threads(2)
    tiny = {"embed_dim": 48, "num_heads": 2, "readout_heads": 2, "scales": [16, 32]}

    def importance_entropy(weight: float) -> float:
        out = tmp_path / f"w{weight}"
        config = replace(_config(tiny_data, out, 3), model="hnf_small", model_overrides=tiny, balance_weight=weight, lr=3e-3)
        train(config)
        model, meta = load_checkpoint(out / "checkpoint")
        run = prepare_run_data(tiny_data, out / "split.json", None, 0, 0.2, 0.2)
        data = MicrographDataset(run.train, run.classes, build_eval_transform(64), resize=72)
        images = torch.stack([data[i][0] for i in range(len(data))])
        with torch.no_grad():
            _, features = model.eval()(images, return_explain=True)
        usage = torch.cat([g.reshape(-1, g.shape[-1]) for g in features.gate_weights]).mean(0)
        return float(-(usage * usage.log()).sum())

    plain, balanced = importance_entropy(0.0), importance_entropy(20.0)
    uniform = float(torch.tensor(3.0).log())  # three experts
    assert uniform - balanced < (uniform - plain) / 5, (plain, balanced)  # far closer to even use
    with pytest.raises(HnfError, match="--balance-weight needs an HNF model"):
        train(replace(_config(tiny_data, tmp_path / "resnet", 1), balance_weight=1.0))
