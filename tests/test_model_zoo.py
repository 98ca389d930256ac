"""The model zoo (`models.catalog`): paper_cnn, resnet18, wide_mlp, identical in PyTorch and Keras 3.

Framework-free checks run here; torch runs in this process; Keras only in a `python -c` subprocess
(torch and TensorFlow are never imported in the same process). Logit parity of the same canonical
weights in both frameworks is in test_model_parity.py.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from parallel_vision.models import catalog
from parallel_vision.models import init as model_init

needs_tf = pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None, reason="TensorFlow is not installed")

SHAPES = ((3, 32, 10), (1, 28, 10))  # (channels, image_size, classes): CIFAR-10, MNIST
#: (model, channels, size, classes) → (trainable parameters, BN running statistics, forward FLOPs per image)
PINNED = {
    ("paper_cnn", 1, 28, 10): (905_354, 832, 59_877_632),
    ("paper_cnn", 3, 32, 10): (1_151_690, 832, 79_381_760),
    ("resnet18", 1, 28, 10): (11_172_810, 9_600, 911_601_664),
    ("resnet18", 3, 32, 10): (11_173_962, 9_600, 1_110_845_440),  # kuangliu's 11,173,962; 0.555 G MACs
    ("wide_mlp", 1, 28, 10): (20_054_026, 16_384, 40_058_880),
    ("wide_mlp", 3, 32, 10): (29_425_674, 16_384, 58_802_176),
}
#: sha256 of the paper CNN's aligned sets as the code before the zoo drew them (see _digest).
PAPER_DIGESTS = {
    (0, 1, 28, 10, "torch"): "8ae4249d69ac6ad62921ddeda1a7f78f756c0122ba07b64f405dfbe6298e2edb",
    (7, 3, 32, 100, "torch"): "3c3090c395911a8e6113d8cd458c4ecf0bc95c0eff6af8153b3accd226ff252e",
    (1, 1, 28, 10, "glorot"): "43550d1a055a7b2a1daceb850ebdc9621ed16f9031f7abcacaa622adc372b79e",
}


def _digest(layers: list[model_init.Layer]) -> str:
    d = hashlib.sha256()
    for layer in layers:
        d.update(layer.name.encode()), d.update(layer.kind.encode()), d.update(repr(layer.flatten_from).encode())
        for key in sorted(layer.arrays):
            d.update(key.encode()), d.update(layer.arrays[key].tobytes())
    return d.hexdigest()


def _python(code: str) -> str:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()[-1]


# --------------------------------------------------------------------------- framework-free
def test_catalog_names_costs_and_descriptions() -> None:
    assert catalog.MODEL_NAMES == ("paper_cnn", "resnet18", "wide_mlp")
    for (name, c, s, k), (params, stats, flops) in PINNED.items():
        costs = catalog.model_costs(name, c, s, k)
        assert (costs.parameters, costs.bn_statistics, costs.forward_flops_per_image) == (params, stats, flops)
        assert costs.gradient_bytes == 4 * params
        assert costs.train_flops_per_image == 3 * flops
        assert costs.gradient_bytes_per_train_flop(8) == pytest.approx(4 * params / (3 * flops * 8))
        # the same description the aligned init uses: its arrays are parameters + statistics
        assert model_init.count(model_init.aligned_weights(0, c, s, k, name)) == params + stats
    for name in catalog.MODEL_NAMES:
        line = catalog.describe(name)
        assert line.startswith(name + ":") and "\n" not in line
    # the communication-heavy one really is: ~50× ResNet-18's gradient bytes per FLOP at CIFAR size
    mlp, resnet = catalog.model_costs("wide_mlp", 3, 32, 10), catalog.model_costs("resnet18", 3, 32, 10)
    assert mlp.gradient_bytes_per_train_flop() > 40 * resnet.gradient_bytes_per_train_flop()
    with pytest.raises(ValueError, match="unknown model 'vgg'"):
        catalog.model_costs("vgg", 3, 32, 10)
    with pytest.raises(ValueError, match="unknown model"):
        catalog.describe("vgg")


def test_docs_models_table_is_the_computed_one() -> None:
    doc = (Path(__file__).resolve().parents[1] / "docs" / "models.md").read_text(encoding="utf-8")
    table = doc.split("<!-- costs-table:start -->\n", 1)[1].split("<!-- costs-table:end -->", 1)[0]
    assert table == catalog.costs_markdown()  # regenerate with catalog.costs_markdown() when a model changes


def test_resnet18_specs_follow_the_cifar_variant() -> None:
    specs = {s.name: s for s in catalog.layer_specs("resnet18", 1, 28, 10)}
    assert specs["conv1"].shape == (64, 1, 3, 3) and specs["conv1"].stride == 1 and specs["conv1"].out_size == (28, 28)
    assert all(not s.bias for s in specs.values() if s.kind == "conv") and specs["linear"].bias
    # stride 2 and a 1×1 projection only at the first block of stages 2–4; 28 → 14 → 7 → 4 (no max-pool)
    assert [n for n in specs if "shortcut" in n] == [f"layer{i}.0.shortcut.{j}" for i in (2, 3, 4) for j in (0, 1)]
    assert [specs[f"layer{i}.1.conv2"].out_size for i in (1, 2, 3, 4)] == [(28, 28), (14, 14), (7, 7), (4, 4)]
    assert specs["layer4.0.shortcut.0"].out_size == specs["layer4.0.conv1"].out_size == (4, 4)
    assert specs["linear"].shape == (10, 512)
    mlp = catalog.layer_specs("wide_mlp", 3, 32, 10)
    assert [(s.name, s.shape) for s in mlp] == [("fc1", (4096, 3072)), ("bn1", (4096,)), ("fc2", (4096, 4096)),
                                                 ("bn2", (4096,)), ("fc3", (10, 4096))]
    assert mlp[0].flatten_from == (3, 32, 32)


def test_aligned_weights_paper_cnn_is_bit_identical_to_before_and_zoo_sets_are_deterministic() -> None:
    for (seed, c, s, k, scheme), digest in PAPER_DIGESTS.items():
        assert _digest(model_init.aligned_weights(seed, c, s, k, scheme=scheme)) == digest
        assert _digest(model_init.aligned_weights(seed, c, s, k, "paper_cnn", scheme=scheme)) == digest
    for name in ("resnet18", "wide_mlp"):
        a, b = model_init.aligned_weights(3, 1, 28, 10, name), model_init.aligned_weights(3, 1, 28, 10, name)
        c = model_init.aligned_weights(4, 1, 28, 10, name)
        assert _digest(a) == _digest(b) != _digest(c)
        assert [layer.name for layer in a] == [s.name for s in catalog.layer_specs(name, 1, 28, 10)]
        assert all(x.dtype == np.float32 for layer in a for x in layer.arrays.values())
    resnet = {layer.name: layer for layer in model_init.aligned_weights(0, 3, 32, 10, "resnet18")}
    assert set(resnet["layer2.0.conv1"].arrays) == {"weight"}  # no conv bias
    w = resnet["layer2.0.conv1"].arrays["weight"]
    assert np.abs(w).max() <= 1 / np.sqrt(64 * 9) and np.abs(w).max() > 0.99 / np.sqrt(64 * 9)
    assert [len(v) for v in model_init.torch_arrays([resnet["conv1"], resnet["bn1"], resnet["linear"]])] == [1, 4, 2]


def test_catalog_init_and_keras_modules_import_no_framework() -> None:
    code = ("import sys; import parallel_vision.models.catalog, parallel_vision.models.init;"
            "import parallel_vision.models.keras_zoo, parallel_vision.models.keras_resnet, "
            "parallel_vision.models.keras_mlp; parallel_vision.models.catalog.model_costs('resnet18', 3, 32, 10);"
            "bad = [x for x in ('torch', 'tensorflow', 'keras') if x in sys.modules]; print(bad); assert not bad")
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------- torch
@pytest.mark.parametrize("name", catalog.MODEL_NAMES)
@pytest.mark.parametrize("shape", SHAPES, ids=["cifar", "mnist"])
def test_torch_counts_and_flops_match_the_catalog(name: str, shape: tuple[int, int, int]) -> None:
    torch = pytest.importorskip("torch")
    from torch.utils.flop_counter import FlopCounterMode

    from parallel_vision.models.torch_zoo import build_torch_model, count_parameters

    c, s, k = shape
    params, stats, flops = PINNED[(name, c, s, k)]
    model = build_torch_model(name, c, s, k).eval()
    assert count_parameters(model) == params + stats
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == params
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        logits = model(torch.zeros(1, c, s, s))
    assert logits.shape == (1, k)
    assert counter.get_total_flops() == flops == catalog.model_costs(name, c, s, k).forward_flops_per_image


@pytest.mark.parametrize("name", ["resnet18", "wide_mlp", "paper_cnn"])
def test_torch_load_canonical_by_name_is_bit_exact(name: str) -> None:
    torch = pytest.importorskip("torch")
    from parallel_vision.models.torch_zoo import build_torch_model, load_canonical

    layers = model_init.aligned_weights(11, 1, 28, 10, name)
    model = build_torch_model(name, 1, 28, 10)
    load_canonical(model, layers)
    state = {n: t for n, t in model.state_dict().items() if not n.endswith("num_batches_tracked")}
    want = [v for arrays in model_init.torch_arrays(layers) for v in arrays]
    assert len(state) == len(want)
    if name != "paper_cnn":  # by name: the state dict keys ARE the canonical names
        keys = [f"{layer.name}.{attr}" for layer, arrays in zip(layers, model_init.torch_arrays(layers), strict=True)
                for attr in ("weight", "bias", "running_mean", "running_var")[: len(arrays)]]
        assert list(state) == keys
    assert all(torch.equal(t, torch.from_numpy(w)) for t, w in zip(state.values(), want, strict=True))
    if name == "resnet18":  # kuangliu's keys, e.g. the projection shortcut and the classifier
        assert {"layer2.0.shortcut.0.weight", "layer2.0.shortcut.1.running_var", "linear.weight"} <= set(state)
    with pytest.raises(ValueError):
        load_canonical(build_torch_model(name, 3, 32, 10), layers)  # wrong input shape for this set
    if name != "paper_cnn":
        with pytest.raises(ValueError, match="do not match by name"):
            load_canonical(model, layers[:-1])


# --------------------------------------------------------------------------- Keras
@needs_tf
@pytest.mark.slow
@pytest.mark.tensorflow
def test_keras_counts_names_and_loading_match_the_catalog() -> None:
    out = _python("""
        import json, numpy as np
        from parallel_vision.models import catalog, init as m
        from parallel_vision.models.keras_cnn import build_keras_cnn
        from parallel_vision.models.keras_zoo import build_keras_model, load_canonical
        res = {}
        for name in catalog.MODEL_NAMES:
            for c, s, k in ((3, 32, 10), (1, 28, 10)):
                model = build_keras_model(name, (s, s, c), k)
                layers = m.aligned_weights(2, c, s, k, name)
                load_canonical(model, layers)
                got = {l.name: [np.asarray(w) for w in l.weights] for l in model.layers if l.weights}
                if name == "paper_cnn":
                    exact = all(np.array_equal(a, b) for a, b in zip(model.get_weights(), m.keras_weights(layers)))
                else:
                    exact = all(all(np.array_equal(a, b) for a, b in zip(got[layer.name], m.keras_layer_weights(layer),
                                                                         strict=True)) for layer in layers)
                try:
                    load_canonical(model, m.aligned_weights(2, 3 if c == 1 else 1, s, k, name))
                    rejects = False
                except ValueError:
                    rejects = True
                res[f"{name}/{c}/{s}"] = {
                    "params": model.count_params(),
                    "trainable": int(sum(np.prod(w.shape) for w in model.trainable_weights)),
                    "names": sorted(got), "exact": exact, "rejects_wrong_shape": rejects,
                    "logits_dtype": str(model.outputs[0].dtype), "out": list(model.output_shape)}
        same = build_keras_cnn().count_params() == build_keras_model("paper_cnn").count_params()
        print(json.dumps({"models": res, "paper_same": same}))
        """)
    res = json.loads(out)
    assert res["paper_same"]
    for (name, c, s, k), (params, stats, _) in PINNED.items():
        got = res["models"][f"{name}/{c}/{s}"]
        assert got["params"] == params + stats, name
        assert got["trainable"] == params, name
        assert got["exact"] and got["rejects_wrong_shape"], name
        assert got["out"] == [None, k] and got["logits_dtype"] == "float32"
        if name != "paper_cnn":  # named like the torch modules / canonical layers
            assert got["names"] == sorted(s_.name for s_ in catalog.layer_specs(name, c, s, k))
