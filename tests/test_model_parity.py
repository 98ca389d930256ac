"""`--init aligned`: one framework-free weight set, converted to each framework's layout, gives the same network.

torch runs in this process; Keras always in a `python -c` subprocess (torch and TensorFlow are never imported
in the same process). The Keras side also evaluates a deliberately wrong conversion (the first dense kernel
without the NCHW → NHWC flatten permutation) to prove the comparison can fail.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from parallel_vision.config import RunConfig
from parallel_vision.models import init as model_init

PAPER_TOTAL = 906_186
needs_tf = pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None, reason="TensorFlow is not installed")
needs_jax = pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is not installed")
KERAS_BACKENDS = [pytest.param("tensorflow", marks=[needs_tf, pytest.mark.tensorflow], id="keras-tensorflow"),
                  pytest.param("jax", marks=[needs_jax, pytest.mark.jax], id="keras-jax")]


def _python(code: str, backend: str = "tensorflow") -> str:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="", KERAS_BACKEND=backend,
               JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()[-1]


def _perturbed(seed: int, channels: int = 1, size: int = 28, classes: int = 10,
               model: str = "paper_cnn") -> list[model_init.Layer]:
    """The aligned set with random BatchNorm statistics and affine terms, so their mapping is tested too."""
    rng = np.random.default_rng(seed + 1)
    layers = model_init.aligned_weights(seed, channels, size, classes, model)
    for layer in layers:
        if layer.kind == "bn":
            n = layer.arrays["gamma"].shape
            layer.arrays.update(gamma=rng.uniform(0.5, 1.5, n).astype(np.float32),
                                beta=rng.normal(0, 0.2, n).astype(np.float32),
                                mean=rng.normal(0, 0.2, n).astype(np.float32),
                                var=rng.uniform(0.5, 2.0, n).astype(np.float32))
    return layers


# --------------------------------------------------------------------------- framework-free
def test_canonical_weights_are_deterministic_framework_free_and_906186() -> None:
    a, b, c = model_init.aligned_weights(0), model_init.aligned_weights(0), model_init.aligned_weights(1)
    assert model_init.count(a) == PAPER_TOTAL
    assert all(x.dtype == np.float32 for layer in a for x in layer.arrays.values())
    for la, lb, lc in zip(a, b, c, strict=True):
        for key in la.arrays:
            assert np.array_equal(la.arrays[key], lb.arrays[key])
        if la.kind != "bn":
            assert not np.array_equal(la.arrays["weight"], lc.arrays["weight"])
    # torch's default scheme: U(±1/√fan_in) for weights and biases
    dense1 = next(layer for layer in a if layer.name == "dense1")
    assert dense1.arrays["weight"].shape == (128, 6272)
    assert np.abs(dense1.arrays["weight"]).max() <= 1 / np.sqrt(6272)
    assert np.abs(dense1.arrays["weight"]).max() > 0.99 / np.sqrt(6272)
    code = ("import sys; import parallel_vision.models.init as m; m.aligned_weights(0);"
            "bad = [x for x in ('torch', 'tensorflow', 'keras') if x in sys.modules]; print(bad); assert not bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_keras_dense_kernel_reads_an_nhwc_flatten_like_torch_reads_nchw() -> None:
    rng = np.random.default_rng(0)
    c, h, w, out = 5, 3, 4, 7
    weight = rng.normal(size=(out, c * h * w)).astype(np.float32)
    fmap = rng.normal(size=(c, h, w)).astype(np.float32)
    torch_way = weight @ fmap.reshape(-1)  # nn.Flatten of NCHW: (C, H, W) order
    keras_way = fmap.transpose(1, 2, 0).reshape(-1) @ model_init.keras_dense_kernel(weight, (c, h, w))
    np.testing.assert_allclose(keras_way, torch_way, rtol=1e-5, atol=1e-5)
    naive = fmap.transpose(1, 2, 0).reshape(-1) @ weight.T
    assert not np.allclose(naive, torch_way, atol=1e-2)


def test_adam_epsilon_per_mode() -> None:
    assert model_init.adam_epsilon("torch", "framework") == 1e-8
    assert model_init.adam_epsilon("tensorflow", "framework") == 1e-7
    assert model_init.adam_epsilon("torch", "aligned") == model_init.adam_epsilon("tensorflow", "aligned") == 1e-8


def test_init_is_a_checked_config_field_in_the_identity_only_when_aligned() -> None:
    from parallel_vision.errors import ConfigError

    assert RunConfig().init == "framework" and "init" not in RunConfig().identity()
    aligned = RunConfig(init="aligned")
    assert aligned.identity()["init"] == "aligned"
    assert RunConfig.from_json(aligned.to_json()) == aligned
    with pytest.raises(ConfigError, match="init must be one of framework, aligned"):
        RunConfig(init="glorot")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- torch vs Keras
@pytest.mark.slow
@pytest.mark.parametrize("backend", KERAS_BACKENDS)
def test_torch_and_keras_give_the_same_logits_from_the_same_weights(tmp_path: Path, backend: str) -> None:
    """The same canonical weights in torch and in Keras (on the TensorFlow or the JAX backend: the JAX engine's
    model is the same Keras model, run by XLA) give the same logits within fp tolerance."""
    torch = pytest.importorskip("torch")
    from parallel_vision.models.torch_cnn import PaperCNN, count_parameters, load_canonical

    layers = _perturbed(7)
    x = np.random.default_rng(3).normal(size=(16, 1, 28, 28)).astype(np.float32)
    np.save(tmp_path / "x.npy", x.transpose(0, 2, 3, 1))  # NHWC for Keras
    np.savez(tmp_path / "bn.npz", **{f"{layer.name}.{k}": v for layer in layers if layer.kind == "bn"
                                     for k, v in layer.arrays.items()})

    model = PaperCNN().eval()
    load_canonical(model, layers)
    assert count_parameters(model) == PAPER_TOTAL
    for (name, tensor), value in zip(
        ((n, t) for n, t in model.state_dict().items() if not n.endswith("num_batches_tracked")),
        (v for arrays in model_init.torch_arrays(layers) for v in arrays), strict=True):
        assert np.array_equal(tensor.numpy(), value), name  # bit for bit
    with torch.no_grad():
        torch_logits = model(torch.from_numpy(x)).numpy()

    out = _python(f"""
        import json, numpy as np
        from parallel_vision.models import init as m
        from parallel_vision.models.keras_cnn import build_keras_cnn, load_canonical
        layers = m.aligned_weights(7)
        bn = np.load({str(tmp_path / "bn.npz")!r})
        for layer in layers:
            if layer.kind == "bn":
                layer.arrays.update({{k: bn[layer.name + "." + k] for k in layer.arrays}})
        x = np.load({str(tmp_path / "x.npy")!r})
        model = build_keras_cnn()
        load_canonical(model, layers)
        exact = all(np.array_equal(a, b) for a, b in zip(model.get_weights(), m.keras_weights(layers)))
        logits = np.asarray(model(x, training=False))
        values = m.keras_weights(layers)
        values[18] = np.ascontiguousarray(layers[6].arrays["weight"].T)  # wrong: no flatten permutation
        model.set_weights(values)
        naive = np.asarray(model(x, training=False))
        import keras, sys
        print(json.dumps({{"params": model.count_params(), "exact": exact, "backend": keras.backend.backend(),
                          "logits": logits.tolist(), "naive": naive.tolist()}}))
        """, backend)
    keras_side = json.loads(out)
    assert keras_side["backend"] == backend
    assert keras_side["params"] == PAPER_TOTAL
    assert keras_side["exact"]
    keras_logits = np.asarray(keras_side["logits"], np.float32)
    scale = float(np.abs(torch_logits).max())
    assert scale > 0.1  # a real signal, not all-zero logits
    np.testing.assert_allclose(keras_logits, torch_logits, rtol=1e-4, atol=1e-4 * scale)
    assert np.array_equal(keras_logits.argmax(1), torch_logits.argmax(1))
    assert np.abs(np.asarray(keras_side["naive"]) - torch_logits).max() > 1e-2 * scale


@needs_tf
@pytest.mark.slow
@pytest.mark.tensorflow
def test_tf_engine_builds_the_aligned_model_and_optimizer() -> None:
    out = _python("""
        import json, numpy as np, keras
        from parallel_vision.config import RunConfig
        from parallel_vision.engines.tensorflow.model import build_model, make_optimizer
        from parallel_vision.models import init as m
        want = m.keras_weights(m.aligned_weights(5))
        res = {}
        for mode in ("framework", "aligned"):
            cfg = RunConfig(framework="tensorflow", init=mode, seed=5)
            model = build_model(cfg, (28, 28, 1), 10)
            res[mode] = {"same": all(np.array_equal(a, b) for a, b in zip(model.get_weights(), want)),
                         "eps": float(make_optimizer(keras, cfg).epsilon)}
        print(json.dumps(res))
        """)
    res = json.loads(out)
    assert res["aligned"] == {"same": True, "eps": 1e-8}
    assert res["framework"] == {"same": False, "eps": 1e-7}


def test_torch_trainer_starts_from_the_aligned_weights(data_dir: Path) -> None:
    torch = pytest.importorskip("torch")
    from parallel_vision.engines.torch.dist import Dist
    from parallel_vision.engines.torch.loop import Trainer

    base = dict(limit_train=256, limit_test=100, batch_size=128, epochs=1, data_dir=str(data_dir), device="cpu",
                tensorboard=False, seed=5)
    trainer = Trainer(RunConfig(init="aligned", **base), Dist())  # type: ignore[arg-type]
    want = [v for arrays in model_init.torch_arrays(model_init.aligned_weights(5)) for v in arrays]
    got = [t for n, t in trainer.bare_model.state_dict().items() if not n.endswith("num_batches_tracked")]
    assert all(torch.equal(g.contiguous(), torch.from_numpy(w)) for g, w in zip(got, want, strict=True))
    assert trainer.optimizer.defaults["eps"] == 1e-8
    default = Trainer(RunConfig(**base), Dist())  # type: ignore[arg-type]
    first = next(default.bare_model.parameters())
    assert not torch.equal(first.contiguous(), torch.from_numpy(want[0]))


ZOO_PARITY = (("resnet18", 3, 32), ("resnet18", 1, 28), ("wide_mlp", 3, 32))


@needs_tf
@pytest.mark.slow
@pytest.mark.tensorflow
def test_zoo_models_give_the_same_logits_in_torch_and_keras(tmp_path: Path) -> None:
    """resnet18 (CIFAR and MNIST shapes) and wide_mlp: one canonical set (perturbed BatchNorm), loaded by name
    into each framework, gives the same eval-mode logits. Negative controls: Keras' `same` padding at stride 2
    (asymmetric, unlike torch's) for ResNet-18, fc1's kernel without the NCHW → NHWC flatten permutation for
    the MLP."""
    torch = pytest.importorskip("torch")
    from parallel_vision.models.torch_zoo import build_torch_model, load_canonical

    torch_logits = {}
    for i, (name, c, s) in enumerate(ZOO_PARITY):
        layers = _perturbed(21 + i, c, s, 10, name)
        x = np.random.default_rng(i).normal(size=(4, c, s, s)).astype(np.float32)
        np.save(tmp_path / f"x{i}.npy", x.transpose(0, 2, 3, 1))  # NHWC for Keras
        np.savez(tmp_path / f"bn{i}.npz", **{f"{layer.name}.{k}": v for layer in layers if layer.kind == "bn"
                                            for k, v in layer.arrays.items()})
        model = build_torch_model(name, c, s, 10).eval()
        load_canonical(model, layers)
        with torch.no_grad():
            torch_logits[i] = model(torch.from_numpy(x)).numpy()

    out = _python(f"""
        import json, numpy as np, keras
        from parallel_vision.models import init as m
        from parallel_vision.models.keras_zoo import build_keras_model, load_canonical
        res = {{}}
        for i, (name, c, s) in enumerate({ZOO_PARITY!r}):
            layers = m.aligned_weights(21 + i, c, s, 10, name)
            bn = np.load({str(tmp_path)!r} + f"/bn{{i}}.npz")
            for layer in layers:
                if layer.kind == "bn":
                    layer.arrays.update({{k: bn[layer.name + "." + k] for k in layer.arrays}})
            x = np.load({str(tmp_path)!r} + f"/x{{i}}.npy")
            model = build_keras_model(name, (s, s, c), 10)
            load_canonical(model, layers)
            logits = np.asarray(model(x, training=False))
            if name == "resnet18":
                def same_padding(layer):
                    if isinstance(layer, keras.layers.ZeroPadding2D):
                        return keras.layers.Identity(name=layer.name)
                    config = layer.get_config()
                    if isinstance(layer, keras.layers.Conv2D) and config["kernel_size"] == (3, 3):
                        config["padding"] = "same"
                    return layer.__class__.from_config(config)
                naive_model = keras.models.clone_model(model, clone_function=same_padding)
                load_canonical(naive_model, layers)
            else:
                naive_model = model
                fc1 = naive_model.get_layer("fc1")
                fc1.set_weights([np.ascontiguousarray(layers[0].arrays["weight"].T), layers[0].arrays["bias"]])
            naive = np.asarray(naive_model(x, training=False))
            res[i] = {{"logits": logits.tolist(), "naive": naive.tolist()}}
        print(json.dumps(res))
        """)
    keras_side = json.loads(out)
    for i, (name, _, _) in enumerate(ZOO_PARITY):
        want = torch_logits[i]
        got = np.asarray(keras_side[str(i)]["logits"], np.float32)
        scale = float(np.abs(want).max())
        assert scale > 0.1, name  # a real signal, not all-zero logits
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * scale, err_msg=name)
        assert np.array_equal(got.argmax(1), want.argmax(1)), name
        assert np.abs(np.asarray(keras_side[str(i)]["naive"]) - want).max() > 1e-2 * scale, name


# --------------------------------------------------------------------------- bench and CLI
def test_bench_passes_init_to_every_run_and_the_cli_takes_it() -> None:
    from parallel_vision.bench.matrix import expand
    from parallel_vision.bench.presets import get_preset
    from parallel_vision.errors import ConfigError

    plan = expand(get_preset("quick").replace(init="aligned"), cores=2)
    assert plan and all(p.cfg is not None and p.cfg.init == "aligned" for p in plan)
    assert all(p.name.endswith("-init-aligned") for p in plan)
    assert all(p.cfg is not None and p.cfg.init == "framework" for p in expand(get_preset("quick"), cores=2))
    with pytest.raises(ConfigError, match="init must be one of framework, aligned"):
        expand(get_preset("quick").replace(init="glorot"), cores=2)

    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    cli = [sys.executable, "-m", "parallel_vision"]
    dry = subprocess.run(cli + ["bench", "--init", "aligned", "--dry-run"], capture_output=True, text=True,
                         env=env, timeout=120)
    assert dry.returncode == 0, dry.stderr
    assert "tf-single-w1-b512-t1-init-aligned-r1" in dry.stdout and "torch-ddp-w2" in dry.stdout
    bad = subprocess.run(cli + ["train", "--init", "glorot", "--epochs", "1"], capture_output=True, text=True,
                         env=env, timeout=120)
    assert bad.returncode == 2 and "init must be one of framework, aligned" in bad.stderr
