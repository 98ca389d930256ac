"""The workload options (model, dataset shape, augmentation) and their pieces that need no training: the
config refuses what cannot be meant, the bench expands models, the augmentation is a real random crop and
flip, and every engine sees the same normalisation."""

from __future__ import annotations

import pytest
import torch

from parallel_vision.bench.matrix import expand
from parallel_vision.bench.presets import get_preset
from parallel_vision.config import KNOWN_MODELS, RunConfig
from parallel_vision.engines.torch.data import crop_and_flip, load_data
from parallel_vision.engines.workload import workload, workload_record
from parallel_vision.errors import ConfigError
from parallel_vision.models.catalog import MODEL_NAMES


def test_the_config_knows_exactly_the_model_zoo() -> None:
    assert KNOWN_MODELS == MODEL_NAMES


@pytest.mark.parametrize(("changes", "message"), [
    ({"model": "vgg16"}, "model must be one of paper_cnn, resnet18, wide_mlp"),
    ({"image_size": 64}, "image_size applies to --dataset synthetic only"),
    ({"dataset": "cifar10", "classes": 100}, "classes applies to --dataset synthetic only"),
    ({"dataset": "synthetic", "channels": 2}, "channels must be 1 or 3"),
    ({"dataset": "synthetic", "image_size": 4}, "image_size must be >= 8"),
    ({"augment": True}, "a flipped mnist image can be another class"),
])
def test_impossible_workloads_are_refused_in_one_line(changes: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        RunConfig(**changes)
    assert "\n" not in str(info.value)


def test_new_fields_at_their_defaults_keep_the_identity_of_older_runs() -> None:
    identity = RunConfig().identity()
    assert not {"model", "augment", "image_size", "channels", "classes"} & set(identity)
    assert RunConfig(model="resnet18").identity()["model"] == "resnet18"


def test_synthetic_shape_defaults_and_the_workload_block() -> None:
    cfg = RunConfig(dataset="synthetic", model="wide_mlp", image_size=16, classes=7, batch_size=64)
    w = workload(cfg)
    assert (w.channels, w.image_size, w.classes, w.accuracy_meaningful) == (3, 16, 7, False)
    record = workload_record(cfg)
    # wide_mlp: 768 → 4096 → 4096 → 7, with two BatchNorms (gamma, beta).
    params = 768 * 4096 + 4096 + 4096 * 4096 + 4096 + 4096 * 7 + 7 + 2 * 2 * 4096
    assert record["parameters"] == params
    assert record["gradient_bytes"] == 4 * params
    assert record["train_flops_per_image"] == 3 * record["forward_flops_per_image"]
    assert record["accuracy_meaningful"] is False


def test_torch_synthetic_data_is_drawn_on_the_device_with_its_declared_shape() -> None:
    cfg = RunConfig(dataset="synthetic", image_size=12, channels=1, classes=5, batch_size=32, limit_test=40)
    train = load_data(cfg, "train", torch.device("cpu"))
    test = load_data(cfg, "test", torch.device("cpu"))
    assert train.pixels.shape == (320, 1, 12, 12) and train.pixels.dtype == torch.uint8  # 10 global batches
    assert test.n == 40 and int(train.labels.max()) < 5
    again = load_data(cfg, "train", torch.device("cpu"))
    assert torch.equal(train.pixels, again.pixels)  # seeded: the same images every time
    assert not torch.equal(train.pixels[:40], test.pixels)  # but train and test differ


def test_crop_and_flip_shifts_each_image_within_its_border_and_mirrors_about_half() -> None:
    b, c, h, w, pad = 256, 3, 8, 8, 4
    images = torch.arange(b * c * h * w, dtype=torch.int64).remainder(251).add(1).to(torch.uint8)
    images = images.view(b, c, h, w)
    out = crop_and_flip(images, pad, torch.Generator().manual_seed(0))
    assert out.shape == images.shape and out.dtype == torch.uint8
    padded = torch.nn.functional.pad(images, (pad, pad, pad, pad))
    flips, shifted = 0, 0
    for i in range(b):
        windows = [(dy, dx, flip) for dy in range(2 * pad + 1) for dx in range(2 * pad + 1) for flip in (0, 1)
                   if torch.equal(out[i], (lambda x: x.flip(2) if flip else x)(
                       padded[i, :, dy:dy + h, dx:dx + w]))]
        assert windows, f"image {i} is not a crop of its padded self"
        flips += windows[0][2]
        shifted += (windows[0][0], windows[0][1]) != (pad, pad)
    assert 0.35 * b < flips < 0.65 * b
    assert shifted > 0.8 * b  # 80 of 81 offsets move the image
    same = crop_and_flip(images, pad, torch.Generator().manual_seed(0))
    assert torch.equal(out, same)


def test_augmentation_applies_to_training_batches_only_and_is_reproducible() -> None:
    cfg = RunConfig(dataset="synthetic", augment=True, batch_size=32, limit_test=32)
    train = load_data(cfg, "train", torch.device("cpu"))
    test = load_data(cfg, "test", torch.device("cpu"))
    assert train.augment and not test.augment
    index = torch.arange(32)
    a, _ = train.batch(index, key=(0, 0, 0))
    b, _ = train.batch(index, key=(0, 0, 0))
    c, _ = train.batch(index, key=(0, 1, 0))
    plain, _ = train.batch(index)
    assert torch.equal(a, b) and not torch.equal(a, c) and not torch.equal(a, plain)


def test_colour_normalisation_is_per_channel() -> None:
    cfg = RunConfig(dataset="synthetic", batch_size=32, limit_test=32, memory_format="contiguous")
    data = load_data(cfg, "train", torch.device("cpu"))
    x, _ = data.batch(torch.arange(320))
    mean, std = workload(cfg).mean, workload(cfg).std
    expected = (data.pixels.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert torch.allclose(x, expected, atol=1e-6)
    assert abs(float(x.mean())) < 0.02 and abs(float(x.std()) - 1) < 0.02  # uniform pixels, normalised


def test_the_models_preset_runs_every_model_with_one_and_two_workers() -> None:
    plan = expand(get_preset("models"), cores=2)
    runs = {(p.cfg.model, p.cfg.framework, p.cfg.workers) for p in plan if p.cfg is not None}
    assert runs == {(m, f, n) for m in MODEL_NAMES for f in ("torch", "tensorflow") for n in (1, 2)}
    assert len({p.run_name for p in plan}) == len(plan)
    assert all(p.error is None for p in plan)
    # Identical data and hyper-parameters across models: only the model differs between compared runs.
    shared = {(p.cfg.limit_train, p.cfg.limit_test, p.cfg.epochs, p.cfg.batch_size) for p in plan}
    assert len(shared) == 1

