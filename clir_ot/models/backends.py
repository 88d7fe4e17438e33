"""Inference paths: which runtime computes a model's last-layer token states, at which precision.

A path is a backend and a precision (:class:`InferencePath`, written ``backend/dtype``):

=================  ==================  ==========================================================
backend            precisions          what runs the encoder
=================  ==================  ==========================================================
``torch``          fp32, fp16, bf16    PyTorch eager (half precisions by autocast); the default
``torch-compile``  fp32, bf16          ``torch.compile(encoder, dynamic=True)`` (bf16 by autocast)
``onnx``           fp32                ONNX Runtime, on a graph exported with ``torch.onnx.export``
``openvino``       fp32, bf16          OpenVINO, on a graph converted from the torch module; bf16 is
                                       its ``INFERENCE_PRECISION_HINT`` (AMX / AVX-512 BF16 kernels)
=================  ==================  ==========================================================

Every backend returns the encoder's float32 last-layer states; pooling and the scoring head stay in
PyTorch float32 (:meth:`CrossEncoderModel.score_states`), so a backend changes only the encoder's
arithmetic. ``onnx`` and ``openvino`` need their extras (``pip install 'clir_ot[onnx]'``,
``'clir_ot[openvino]'``); without them :func:`check_backend` raises :class:`BackendError` with the
install line. Both run on the CPU only, and convert the model once per runner (seconds), in memory.

Which path is fastest, and which keep the ranking faithful, is measured, not assumed:
:mod:`clir_ot.rerank.guard` records both per model and hardware, and ``backend="auto"`` reads them.

The optional runtimes are imported inside the runners that use them (they are optional extras and
heavy to import).
"""
from __future__ import annotations

import importlib.util
import logging
import os
import tempfile
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Mapping

import torch

from clir_ot.errors import BackendError, ConfigError
from clir_ot.models.loading import MODEL_INPUTS, compute_precision, resolve_precision

if TYPE_CHECKING:
    from transformers import PreTrainedModel

logger = logging.getLogger(__name__)

__all__ = ["BACKENDS", "BACKEND_CHOICES", "BackendError", "InferencePath", "StateRunner", "backend_available",
           "build_runner", "check_backend", "check_path", "check_request", "resolve_path"]

#: The backends, in the order ``auto`` prefers them among equally fast paths.
BACKENDS = ("torch", "torch-compile", "onnx", "openvino")
#: Accepted by ``--backend``: a backend, or ``auto`` (the fastest path that passed the quality guard).
BACKEND_CHOICES = ("auto", *BACKENDS)
#: Precisions each backend computes in.
BACKEND_PRECISIONS: dict[str, tuple[str, ...]] = {
    "torch": ("fp32", "fp16", "bf16"),
    "torch-compile": ("fp32", "bf16"),
    "onnx": ("fp32",),
    "openvino": ("fp32", "bf16"),
}
#: backend -> (modules it imports, the extra that installs them)
_EXTRAS: dict[str, tuple[tuple[str, ...], str]] = {
    "onnx": (("onnxruntime", "onnx"), "onnx"),
    "openvino": (("openvino",), "openvino"),
}
_CPU_ONLY = ("onnx", "openvino")


@dataclass(frozen=True)
class InferencePath:
    """A backend and the precision it computes in, e.g. ``InferencePath("openvino", "bf16")``."""

    backend: str
    dtype: str

    def __str__(self) -> str:
        return f"{self.backend}/{self.dtype}"

    @classmethod
    def parse(cls, text: str) -> "InferencePath":
        """``"openvino/bf16"`` -> ``InferencePath("openvino", "bf16")`` (checked)."""
        backend, sep, dtype = str(text).partition("/")
        if not sep:
            raise BackendError(f"inference path {text!r} is not BACKEND/DTYPE (e.g. torch/bf16)")
        return check_path(backend, dtype)


def backend_available(backend: str) -> tuple[bool, str]:
    """``(True, "")`` if ``backend``'s runtime can be imported, else ``(False, the install hint)``."""
    if backend not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r}; valid: {', '.join(BACKEND_CHOICES)}")
    if backend not in _EXTRAS:
        return True, ""
    modules, extra = _EXTRAS[backend]
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        return False, (f"backend {backend!r} needs {', '.join(missing)}, which is not installed: "
                       f"pip install 'clir_ot[{extra}]'")
    return True, ""


def check_backend(backend: str, device: "torch.device | str | None" = None) -> None:
    """Raise :class:`BackendError` unless ``backend`` is known, installed and runs on ``device``."""
    ok, why = backend_available(backend)
    if not ok:
        raise BackendError(why)
    kind = torch.device(device).type if device is not None else "cpu"
    if backend in _CPU_ONLY and kind != "cpu":
        raise BackendError(f"backend {backend!r} runs on the CPU only, not on {kind}; use torch or torch-compile")


def check_path(backend: str, dtype: str) -> InferencePath:
    """The path ``backend/dtype`` once both are known to fit each other (not whether it is installed)."""
    if backend not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r}; valid: {', '.join(BACKEND_CHOICES)}")
    if dtype not in BACKEND_PRECISIONS[backend]:
        raise BackendError(f"backend {backend!r} computes in {', '.join(BACKEND_PRECISIONS[backend])}, "
                           f"not {dtype!r}")
    return InferencePath(backend, dtype)


def check_request(backend: str, dtype: str = "auto", device: "torch.device | str | None" = None) -> None:
    """Check a ``backend`` / ``dtype`` request before any model is loaded: both known, the backend
    installed and able to run on ``device``, and an explicit precision one the backend computes in."""
    if backend not in BACKEND_CHOICES:
        raise BackendError(f"unknown backend {backend!r}; valid: {', '.join(BACKEND_CHOICES)}")
    resolve_precision(dtype)  # an unknown precision is a ConfigError
    if backend != "auto":
        check_backend(backend, device)
        if dtype != "auto":
            check_path(backend, dtype)


def resolve_path(backend: str, dtype: str = "auto", device: "torch.device | str | None" = None) -> InferencePath:
    """The path for an explicit ``backend`` (not ``auto``) and ``dtype`` (``auto``: what
    :func:`~clir_ot.models.loading.resolve_precision` picks if the backend computes in it, else fp32),
    checked to be installed and to run on ``device``."""
    if backend == "auto":
        raise BackendError("backend 'auto' is resolved from quality-guard records (clir_ot.rerank.guard)")
    check_backend(backend, device)
    precision = resolve_precision(dtype, device)
    if dtype == "auto" and precision not in BACKEND_PRECISIONS.get(backend, ()):
        precision = "fp32"
    return check_path(backend, precision)


# --------------------------------------------------------------------------------------------------
# Runners: a padded batch -> float32 last-layer states


class StateRunner:
    """Computes an encoder's last-layer states for padded batches on one :class:`InferencePath`.

    ``runner(batch)`` takes the tokenizer's tensors (``input_ids``, ``attention_mask``, and
    ``token_type_ids`` where the model has them; (batch, seq) int64) and returns (batch, seq, hidden)
    float32 states on the encoder's device. Call it under ``torch.inference_mode``.
    """

    def __init__(self, path: InferencePath, inputs: tuple[str, ...]):
        self.path = path
        self.inputs = inputs

    def __call__(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _arrays(self, batch: Mapping[str, torch.Tensor]) -> dict:
        return {k: batch[k].cpu().numpy() for k in self.inputs}


class _TorchRunner(StateRunner):
    def __init__(self, encoder: "PreTrainedModel", path: InferencePath, inputs: tuple[str, ...]):
        super().__init__(path, inputs)
        self.device = next(encoder.parameters()).device
        self.module: Callable = torch.compile(encoder, dynamic=True) if path.backend == "torch-compile" else encoder

    def __call__(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        with compute_precision(self.device, self.path.dtype):
            states = self.module(**{k: batch[k].to(self.device) for k in self.inputs}).last_hidden_state
        return states.float()


class _StatesOnly(torch.nn.Module):
    """The encoder as a graph of named tensor inputs -> its last-layer states (for export)."""

    def __init__(self, encoder: "PreTrainedModel", inputs: tuple[str, ...]):
        super().__init__()
        self.encoder = encoder
        self.inputs = inputs

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return self.encoder(**dict(zip(self.inputs, tensors))).last_hidden_state


def _threads() -> int:
    return max(1, torch.get_num_threads())


class _OnnxRunner(StateRunner):
    def __init__(self, encoder: "PreTrainedModel", path: InferencePath, inputs: tuple[str, ...],
                 example: Mapping[str, torch.Tensor]):
        super().__init__(path, inputs)
        import onnxruntime

        module = _StatesOnly(encoder, inputs).eval()
        axes = {name: {0: "batch", 1: "sequence"} for name in (*inputs, "last_hidden_state")}
        with tempfile.TemporaryDirectory(prefix="clir_ot-onnx-") as tmp:
            file = os.path.join(tmp, "encoder.onnx")
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                # the TorchScript exporter: one graph with dynamic batch and sequence axes
                torch.onnx.export(module, tuple(example[k] for k in inputs), file, input_names=list(inputs),
                                  output_names=["last_hidden_state"], dynamic_axes=axes, opset_version=17,
                                  dynamo=False)
            options = onnxruntime.SessionOptions()
            options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
            options.intra_op_num_threads = _threads()
            options.log_severity_level = 3
            self.session = onnxruntime.InferenceSession(file, options, providers=["CPUExecutionProvider"])

    def __call__(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return torch.from_numpy(self.session.run(None, self._arrays(batch))[0]).float()


class _OpenVinoRunner(StateRunner):
    def __init__(self, encoder: "PreTrainedModel", path: InferencePath, inputs: tuple[str, ...],
                 example: Mapping[str, torch.Tensor]):
        super().__init__(path, inputs)
        import openvino

        module = _StatesOnly(encoder, inputs).eval()
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            graph = openvino.convert_model(module, example_input=tuple(example[k] for k in inputs))
        graph.reshape({port: openvino.PartialShape([-1, -1]) for port in graph.inputs})  # any batch, any length
        hint = {"fp32": "f32", "bf16": "bf16"}[path.dtype]
        self.compiled = openvino.Core().compile_model(graph, "CPU", {
            "INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": _threads()})

    def __call__(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        arrays = self._arrays(batch)
        return torch.from_numpy(self.compiled([arrays[k] for k in self.inputs])[0]).float()


def build_runner(encoder: "PreTrainedModel", path: InferencePath, example: Mapping[str, torch.Tensor]) -> StateRunner:
    """A :class:`StateRunner` for ``encoder`` on ``path``.

    ``example`` is one tokenized batch (its keys name the model's inputs; ``onnx`` and ``openvino``
    trace the graph with it, with the batch and sequence axes left dynamic).
    """
    path = check_path(path.backend, path.dtype)
    check_backend(path.backend, next(encoder.parameters()).device)
    inputs = tuple(k for k in MODEL_INPUTS if k in example)
    if "input_ids" not in inputs or "attention_mask" not in inputs:
        raise ConfigError(f"an example batch needs input_ids and attention_mask, got {sorted(example)}")
    example = {k: example[k].cpu() for k in inputs}
    was_training = encoder.training
    encoder.eval()
    try:
        if path.backend in ("torch", "torch-compile"):
            runner: StateRunner = _TorchRunner(encoder, path, inputs)
        elif path.backend == "onnx":
            runner = _OnnxRunner(encoder, path, inputs, example)
        else:
            runner = _OpenVinoRunner(encoder, path, inputs, example)
    finally:
        encoder.train(was_training)
    logger.info("inference path %s ready (inputs %s)", path, ", ".join(inputs))
    return runner
