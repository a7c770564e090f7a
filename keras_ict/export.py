"""Export a consistency model for inference without keras-ict: TF SavedModel and ONNX.

Endpoints (noise is an input, so exported graphs are deterministic and comparable):
  * `generate_1step(noise[, labels])`          -> images = f(sigma_max * noise, sigma_max)
  * `generate_2step(noise, noise2[, labels])`  -> two-step sampling with the model's intermediate sigma baked in:
        x0 = f(sigma_max * noise, sigma_max); images = f(x0 + sqrt(s^2 - sigma_min^2) * noise2, s)
  * `denoise(x, sigma[, labels])`             -> f(x, sigma), the consistency function itself.
`noise`, `noise2`, `x` are float32 NHWC (batch, H, W, C); `sigma` float32 (batch,); `labels` int32 (batch,) for
class-conditional models. The batch dimension is dynamic. Generate endpoints return `images`, float32 NHWC in
[-1, 1], and `images_uint8` (floor(127.5 x + 128), clipped: the same rounding as `keras_ict.to_uint8`);
`denoise` returns `denoised` (not clipped). `generate(model, seeds)` equals `generate_1step` fed with
`keras_ict.sampling.seed_noise(seeds, image_shape, 1)[0]`.

Files written into the output folder:
  * `saved_model/`: one SavedModel with a serving signature per endpoint (`tf.saved_model.load(path)
    .signatures["generate_1step"](noise=...)`);
  * `model.onnx` (= generate_1step), `generate_2step.onnx`, `denoise.onnx`: ONNX (opset 17), inputs and
    outputs named as above;
  * `export.json`: endpoints, input/output names and shapes, the numerical check against Keras, versions.

Exports are produced by a process running the TensorFlow backend (it writes both formats through the same
traced graph); from a JAX or PyTorch process the weights are handed to a TensorFlow-backend subprocess. Every
export is verified (onnxruntime and `tf.saved_model.load` against Keras on the same noise, max abs error
<= 1e-4) before the output folder appears: files are written into a temporary folder that is renamed at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

FORMATS = ("saved_model", "onnx")
ONNX_FILES = {"generate_1step": "model.onnx", "generate_2step": "generate_2step.onnx", "denoise": "denoise.onnx"}
ONNX_OPSET = 17
TOLERANCE = 1e-4
VERIFY_BATCH = 3

__all__ = ["FORMATS", "ONNX_FILES", "endpoint_models", "export", "load_onnx", "load_saved_model", "verify"]


def _keras():
    import keras

    return keras


def _endpoint_classes():
    """Defined lazily so importing this module does not import Keras (the CLI picks the backend first)."""
    keras = _keras()
    from keras import ops

    def to_uint8(images):
        return ops.cast(ops.clip(ops.floor(images * 127.5 + 128.0), 0.0, 255.0), "uint8")

    class _Endpoint(keras.Model):
        def __init__(self, consistency_model, **kwargs):
            super().__init__(**kwargs)
            self.consistency_model = consistency_model

        def f(self, x, sigma, labels):
            sigma = ops.ones_like(x[:, 0, 0, 0]) * sigma
            args = [x, sigma] + ([labels] if labels is not None else [])
            return self.consistency_model(args, training=False)

        def _split(self, inputs, count):
            inputs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
            labels = inputs[count] if len(inputs) > count else None
            return inputs[:count], labels

    class OneStepGenerator(_Endpoint):
        def call(self, inputs):
            (noise,), labels = self._split(inputs, 1)
            sigma = self.consistency_model.sigma_max
            images = ops.clip(self.f(noise * sigma, sigma, labels), -1.0, 1.0)
            return {"images": images, "images_uint8": to_uint8(images)}

    class TwoStepGenerator(_Endpoint):
        def __init__(self, consistency_model, sigma_mid, **kwargs):
            super().__init__(consistency_model, **kwargs)
            self.sigma_mid = float(sigma_mid)

        def call(self, inputs):
            (noise, noise2), labels = self._split(inputs, 2)
            cm = self.consistency_model
            x0 = self.f(noise * cm.sigma_max, cm.sigma_max, labels)
            scale = float(np.sqrt(self.sigma_mid**2 - cm.sigma_min**2))
            images = ops.clip(self.f(x0 + scale * noise2, self.sigma_mid, labels), -1.0, 1.0)
            return {"images": images, "images_uint8": to_uint8(images)}

    class Denoiser(_Endpoint):
        def call(self, inputs):
            (x, sigma), labels = self._split(inputs, 2)
            args = [x, sigma] + ([labels] if labels is not None else [])
            return {"denoised": self.consistency_model(args, training=False)}

    return OneStepGenerator, TwoStepGenerator, Denoiser


def _input_names(endpoint, conditional):
    names = {"generate_1step": ["noise"], "generate_2step": ["noise", "noise2"], "denoise": ["x", "sigma"]}[endpoint]
    return names + (["labels"] if conditional else [])


def _output_names(endpoint):
    return ["denoised"] if endpoint == "denoise" else ["images", "images_uint8"]


def _specs(endpoint, image_shape, conditional):
    """[(name, shape, dtype)] of an endpoint's inputs."""
    image = (None,) + tuple(int(v) for v in image_shape)
    specs = []
    for name in _input_names(endpoint, conditional):
        if name == "labels":
            specs.append((name, (None,), "int32"))
        elif name == "sigma":
            specs.append((name, (None,), "float32"))
        else:
            specs.append((name, image, "float32"))
    return specs


def endpoint_models(model, two_step_sigma):
    """{endpoint name: Keras model} wrapping a `ConsistencyModel` (see the module docstring)."""
    one, two, den = _endpoint_classes()
    _check_two_step(model, two_step_sigma)
    return {"generate_1step": one(model), "generate_2step": two(model, two_step_sigma), "denoise": den(model)}


def _check_two_step(model, sigma):
    if sigma is None or not (model.sigma_min < float(sigma) < model.sigma_max):
        raise ValueError(
            f"two_step_sigma must lie in ({model.sigma_min}, {model.sigma_max}), got {sigma!r} (the paper uses 0.821 "
            "for CIFAR-10 and 1.526 for ImageNet 64)"
        )


def verification_inputs(endpoint, image_shape, conditional, label_dim=0, batch=VERIFY_BATCH, seed=0):
    """Fixed inputs for checking an exported endpoint: {input name: array}."""
    rng = np.random.default_rng(seed)
    inputs = {}
    for name, shape, dtype in _specs(endpoint, image_shape, conditional):
        shape = (batch,) + shape[1:]
        if name == "labels":
            inputs[name] = (np.arange(batch) % max(label_dim, 1)).astype(np.int32)
        elif name == "sigma":
            inputs[name] = np.geomspace(0.01, 80.0, batch).astype(np.float32)
        elif name == "x":
            inputs[name] = (rng.uniform(-1, 1, shape) + rng.standard_normal(shape)).astype(np.float32)
        else:
            inputs[name] = rng.standard_normal(shape).astype(np.float32)
    return inputs


# ------------------------------------------------------------------------------------------------- loading


def _load_model(model):
    """(ConsistencyModel, two_step_sigma, source description) from a model, a folder / zoo name or a .keras file."""
    keras = _keras()
    import keras_ict
    from keras_ict.parameterization import ConsistencyModel

    keras_ict._load_all()  # registers the network classes that a .keras file names
    if isinstance(model, ConsistencyModel):
        sampling = getattr(model, "sampling", None) or {}
        mid = sampling.get("sigmas_2step", [None, None])[1]
        return model, mid, "in-memory model"
    path = Path(os.fspath(model))
    if path.suffix == ".keras" and path.is_file():
        loaded = keras.saving.load_model(path, safe_mode=True)
        if not isinstance(loaded, ConsistencyModel):
            raise ValueError(f"{path} holds a {type(loaded).__name__}, not a keras_ict ConsistencyModel")
        return loaded, None, str(path)
    from keras_ict.zoo import from_preset

    loaded = from_preset(model)
    return loaded, loaded.sampling.get("sigmas_2step", [None, None])[1], str(model)


# ----------------------------------------------------------------------------------------------- exporting


def _write_saved_model(models, specs, folder):
    import tensorflow as tf

    keras = _keras()
    archive = keras.export.ExportArchive()
    for name, endpoint in models.items():
        archive.track(endpoint)
    for name, endpoint in models.items():
        signature = [tf.TensorSpec(shape, dtype, name=n) for n, shape, dtype in specs[name]]
        if len(signature) == 1:
            fn = (lambda e: (lambda a: e(a)))(endpoint)
        elif len(signature) == 2:
            fn = (lambda e: (lambda a, b: e([a, b])))(endpoint)
        else:
            fn = (lambda e: (lambda a, b, c: e([a, b, c])))(endpoint)
        archive.add_endpoint(name, fn, input_signature=signature)
    archive.write_out(str(folder), verbose=False)


def _rename_onnx(path, inputs, outputs):
    """Give the graph's inputs and outputs our names whatever the converter called them."""
    import onnx

    model = onnx.load(str(path))
    graph = model.graph
    initializers = {init.name for init in graph.initializer}
    graph_inputs = [i for i in graph.input if i.name not in initializers]
    if len(graph_inputs) != len(inputs) or len(graph.output) != len(outputs):
        raise RuntimeError(
            f"{path.name}: converter produced inputs {[i.name for i in graph_inputs]} and outputs "
            f"{[o.name for o in graph.output]}, expected {inputs} and {outputs}"
        )
    mapping = {old.name: new for old, new in zip(graph_inputs, inputs)}
    mapping.update({old.name: new for old, new in zip(graph.output, outputs)})
    for value in list(graph_inputs) + list(graph.output):
        value.name = mapping[value.name]
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in mapping:
                node.input[i] = mapping[name]
        for i, name in enumerate(node.output):
            if name in mapping:
                node.output[i] = mapping[name]
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _write_onnx(models, specs, folder):
    keras = _keras()
    for name, endpoint in models.items():
        signature = [keras.InputSpec(shape=shape, dtype=dtype, name=n) for n, shape, dtype in specs[name]]
        path = folder / ONNX_FILES[name]
        endpoint.export(str(path), format="onnx", verbose=False, input_signature=[signature], opset_version=ONNX_OPSET)
        # The converter orders dict outputs by key: denoised | images, images_uint8.
        _rename_onnx(path, [n for n, _, _ in specs[name]], _output_names(name))


# -------------------------------------------------------------------------------------------------- loading


def load_saved_model(folder):
    """`tf.saved_model.load` of an export's saved_model/ (or of the folder itself)."""
    import tensorflow as tf

    folder = Path(folder)
    if (folder / "saved_model").is_dir():
        folder = folder / "saved_model"
    if not (folder / "saved_model.pb").is_file():
        raise FileNotFoundError(f"{folder} is not a SavedModel folder (saved_model.pb is missing)")
    try:
        return tf.saved_model.load(str(folder))
    except Exception as e:  # tf raises many types for a corrupt or truncated file
        raise ValueError(f"{folder}: cannot load the SavedModel ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None


def load_onnx(path):
    """An onnxruntime InferenceSession on the CPU, with a clear error for a missing or corrupt file."""
    import onnxruntime

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX file {path} does not exist")
    try:
        return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as e:
        raise ValueError(f"{path}: not a loadable ONNX model ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None


def verify(folder, models, specs, image_shape, conditional, label_dim, formats):
    """Max abs error of every exported endpoint against the Keras endpoint on the same inputs; raises above TOLERANCE."""
    report = {}
    saved = load_saved_model(folder) if "saved_model" in formats else None
    for name, endpoint in models.items():
        inputs = verification_inputs(name, image_shape, conditional, label_dim)
        ordered = [inputs[n] for n, _, _ in specs[name]]
        expected = {k: np.asarray(_keras().ops.convert_to_numpy(v)) for k, v in endpoint(ordered).items()}
        outputs = {}
        if saved is not None:
            got = saved.signatures[name](**{n: v for n, v in inputs.items()})
            outputs["saved_model"] = {k: v.numpy() for k, v in got.items()}
        if "onnx" in formats:
            session = load_onnx(folder / ONNX_FILES[name])
            outputs["onnx"] = dict(zip([o.name for o in session.get_outputs()], session.run(None, inputs)))
        errors = {}
        for fmt, got in outputs.items():
            if sorted(got) != sorted(expected):
                raise RuntimeError(f"exported {fmt} endpoint {name} has outputs {sorted(got)}, expected {sorted(expected)}")
            for key, want in expected.items():
                diff = np.abs(got[key].astype(np.float64) - want.astype(np.float64))
                err = float(np.max(diff)) if diff.size else 0.0
                # uint8 outputs may differ by one level where a float rounds across an integer boundary.
                limit = 1.0 if want.dtype == np.uint8 else TOLERANCE
                if got[key].dtype != want.dtype or not err <= limit:
                    raise RuntimeError(
                        f"exported {fmt} endpoint {name} output {key} differs from Keras: max abs error {err:.3g}, "
                        f"dtype {got[key].dtype} vs {want.dtype}"
                    )
                if want.dtype != np.uint8:
                    errors[fmt] = err
        report[name] = errors
    return report


def _versions():
    versions = {"keras": _keras().__version__}
    for module in ("tensorflow", "onnx", "onnxruntime", "tf2onnx"):
        try:
            versions[module] = __import__(module).__version__
        except ImportError:
            pass
    return versions


def _publish(tmp, out, overwrite):
    from keras_ict.files import publish_dir

    publish_dir(tmp, out, overwrite=overwrite)


def _check_formats(formats):
    formats = tuple(formats)
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ValueError(f"formats must be a non-empty subset of {FORMATS}, got {list(formats)}")
    return formats


def export(model, out_dir, formats=FORMATS, two_step_sigma=None, overwrite=False, python=None):
    """Export `model` (a ConsistencyModel, a model folder / zoo name, or a .keras file) into `out_dir`.

    Returns the export report (also written as `out_dir/export.json`). See the module docstring for the
    endpoints and files. Runs in a TensorFlow-backend subprocess when this process uses another backend.
    """
    keras = _keras()
    formats = _check_formats(formats)
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass overwrite=True (--overwrite) to replace it")
    # Loaded (sha256, safe_mode, sigma and dtype checks) here even when another process writes the files, so
    # bad input fails in this process with its own error type before any work starts.
    cm, recorded_mid, source = _load_model(model)
    mid = two_step_sigma if two_step_sigma is not None else recorded_mid
    _check_two_step(cm, mid)
    if cm.compute_dtype != "float32":
        raise ValueError(f"export needs a float32 model, got dtype policy {cm.dtype_policy.name}")
    if keras.backend.backend() != "tensorflow":
        return _export_in_subprocess(model, out, formats, two_step_sigma, overwrite, python)

    image_shape = tuple(int(v) for v in cm.image_shape)
    models = endpoint_models(cm, mid)
    specs = {name: _specs(name, image_shape, cm.conditional) for name in models}
    for name, endpoint in models.items():  # build every wrapper once (tracing needs built layers)
        endpoint([verification_inputs(name, image_shape, cm.conditional, cm.label_dim, batch=1)[n] for n, _, _ in specs[name]])

    out.parent.mkdir(parents=True, exist_ok=True)
    from keras_ict.files import remove_stale_temporaries

    remove_stale_temporaries(out.parent, (f".{out.name}.",))  # left by a killed export of the same folder
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        if "saved_model" in formats:
            _write_saved_model(models, specs, tmp / "saved_model")
        if "onnx" in formats:
            _write_onnx(models, specs, tmp)
        errors = verify(tmp, models, specs, image_shape, cm.conditional, cm.label_dim, formats)
        report = {
            "source": source,
            "formats": list(formats),
            "image_shape": list(image_shape),
            "label_dim": int(cm.label_dim),
            "sigma_max": float(cm.sigma_max),
            "sigma_min": float(cm.sigma_min),
            "two_step_sigma": float(mid),
            "endpoints": {
                name: {
                    "inputs": [{"name": n, "shape": list(s), "dtype": d} for n, s, d in specs[name]],
                    "outputs": _output_names(name),
                    "onnx_file": ONNX_FILES[name] if "onnx" in formats else None,
                    "max_abs_error_vs_keras": errors[name],
                }
                for name in models
            },
            "onnx_opset": ONNX_OPSET if "onnx" in formats else None,
            "exported_with_backend": keras.backend.backend(),
            "versions": _versions(),
        }
        (tmp / "export.json").write_text(json.dumps(report, indent=2) + "\n")
        os.chmod(tmp, 0o755)
        _publish(tmp, out, overwrite)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return report


def _exit_with_parent():
    """On Linux, a `preexec_fn` that has the kernel SIGKILL the child when this process dies, so that a killed
    export leaves no TensorFlow helper behind that would still write (and rename into place) an export later."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes
    import signal

    def set_parent_death_signal():
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG

    return set_parent_death_signal


def _export_in_subprocess(model, out, formats, two_step_sigma, overwrite, python):
    """Hands the weights to a TensorFlow-backend process (which can write both formats)."""
    from keras_ict.parameterization import ConsistencyModel

    with tempfile.TemporaryDirectory(prefix="keras_ict_export_") as scratch:
        if isinstance(model, ConsistencyModel):
            source = Path(scratch) / "model.keras"
            model.save(source)
            if two_step_sigma is None:
                two_step_sigma = (getattr(model, "sampling", None) or {}).get("sigmas_2step", [None, None])[1]
        else:
            source = model
        command = [python or sys.executable, "-m", "keras_ict", "export", "--model", str(source), "--out", str(out),
                   "--formats", ",".join(formats), "--backend", "tensorflow"]
        if two_step_sigma is not None:
            command += ["--two-step-sigma", repr(float(two_step_sigma))]
        if overwrite:
            command.append("--overwrite")
        env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2")
        result = subprocess.run(command, capture_output=True, text=True, env=env, preexec_fn=_exit_with_parent())
    if result.returncode != 0:
        lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
        raise RuntimeError(f"export in a TensorFlow-backend subprocess failed: {lines[-1] if lines else 'no output'}")
    return json.loads((out / "export.json").read_text())
