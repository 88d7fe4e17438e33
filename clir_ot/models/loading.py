"""Loading Hugging Face encoders and tokenizers, from a local folder or the hub, offline-aware.

Every neural stage loads its transformer through :func:`load_encoder`. It accepts a hub name
(``bert-base-multilingual-cased``, ``xlm-roberta-base``, ``xlm-roberta-large``, ...), a local folder
written by ``save_pretrained``, ``None`` or ``"multilingual-e5-small"`` (the embedded offline default,
see :mod:`clir_ot.models.default`). It never runs code shipped with a model (``trust_remote_code``
stays off) and prefers safetensors weights.

Offline behaviour: when ``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE`` is set, or the hub does not answer
within a few seconds, a hub name that is not in the local Hugging Face cache fails at once with a
:class:`~clir_ot.errors.ModelLoadError` that says how to pass a local folder instead; transformers'
own path (retries against an unreachable host, then a deep traceback) is never taken.

This module also holds what the model classes share at run time: the compute precision
(:func:`resolve_precision`, :func:`compute_precision`), length-sorted batching (:func:`run_batched`),
the usable input length (:func:`max_sequence_length`) and a model's identity (:func:`parameters_digest`).
A model folder's files (``clir_ot.json``, atomic saving) are :mod:`clir_ot.models.folder`'s.

``transformers`` and ``huggingface_hub`` are imported inside the functions that use them: they are
heavy (transformers takes seconds to import) and only a verb that loads a model needs them, so
``clir-ot --help`` and the BM25 verbs never import them. ``torch`` is imported at the top, since
every model class needs it anyway.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import inspect
import logging
import os
import platform
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, NamedTuple, Sequence

import numpy as np
import torch

from clir_ot.errors import ConfigError, ModelLoadError
from clir_ot.io import PathLike
from clir_ot.models.default import resolve_model
from clir_ot.models.folder import check_model_dir
from clir_ot.progress import progress_bar

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

HUB_PROBE_TIMEOUT_S = 3.0
"""Seconds to wait for the hub to answer before treating it as unreachable."""

_TRUE_VALUES = {"1", "ON", "YES", "TRUE"}

OFFLINE_HINT = (
    "pass a local model folder instead (--model /path/to/folder, or a path in Python), "
    "or run `clir-ot models prepare` once to build the offline default model (multilingual-e5-small)"
)


# --------------------------------------------------------------------------------------------------
# Hub reachability and locating a model


def is_offline() -> bool:
    """Whether Hugging Face offline mode is on (``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE``).

    The environment is read at call time; the flag that ``huggingface_hub`` read at import counts too.
    """
    for variable in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(variable, "").strip().upper() in _TRUE_VALUES:
            return True
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def hub_endpoint() -> str:
    """The hub's base URL: ``$HF_ENDPOINT`` (read at call time) or huggingface_hub's default."""
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def hub_reachable(endpoint: str | None = None, timeout: float = HUB_PROBE_TIMEOUT_S) -> bool:
    """Whether the hub answers an HTTP request within ``timeout`` seconds.

    Any HTTP answer, an error status included, means the network path works. Proxy variables
    (``HTTPS_PROXY`` ...) are honoured, as they are by the hub client.
    """
    url = (endpoint or hub_endpoint()) + "/api/models?limit=1"
    request = urllib.request.Request(url, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError, ValueError) as err:
        logger.debug("hub %s unreachable: %s", url, err)
        return False


@dataclasses.dataclass(frozen=True)
class ModelSource:
    """Where a model will be loaded from.

    ``location`` is a local folder (``local=True``) or a hub repository id. ``local_files_only`` is
    set when a hub name must be served from the local Hugging Face cache (offline or no network).
    """

    location: str
    local: bool
    local_files_only: bool = False


def _looks_like_path(name: str) -> bool:
    return (
        name.startswith(("/", "./", "../", "~", ".\\", "..\\"))
        or name in (".", "..")
        or name.count("/") > 1
        or "\\" in name
        or os.path.isabs(name)
    )


def _in_hub_cache(repo_id: str, cache_dir: PathLike | None, revision: str | None) -> bool:
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError

    try:
        found = try_to_load_from_cache(repo_id, "config.json", cache_dir=cache_dir, revision=revision)
    except HFValidationError as err:
        raise ModelLoadError(
            f"model {repo_id!r} is neither an existing folder nor a valid hub name ({err}); {OFFLINE_HINT}"
        ) from None
    return isinstance(found, str)


def locate_model(
    name_or_path: PathLike | None,
    *,
    cache_dir: PathLike | None = None,
    revision: str | None = None,
) -> ModelSource:
    """Decide where ``name_or_path`` will be loaded from, failing fast when that is impossible.

    ``None`` and ``"multilingual-e5-small"`` resolve to the offline default (see
    :func:`clir_ot.models.default.resolve_model`). An existing folder is checked with
    :func:`check_model_dir`. A hub name is looked up in the local Hugging Face cache; if it is not
    there and offline mode is on or the hub is unreachable, :class:`ModelLoadError` says so.
    """
    resolved = resolve_model(name_or_path)
    path = Path(resolved).expanduser()
    if path.is_dir():
        return ModelSource(str(check_model_dir(path)), local=True)
    if _looks_like_path(resolved) or path.exists():
        raise ModelLoadError(f"model folder {path} " + ("is a file, not a folder" if path.is_file() else "does not exist"))

    cached = _in_hub_cache(resolved, cache_dir, revision)
    if is_offline():
        if cached:
            return ModelSource(resolved, local=False, local_files_only=True)
        raise ModelLoadError(
            f"model {resolved!r} is not a local folder and not in the local Hugging Face cache, and "
            f"offline mode is on (HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE), so it cannot be downloaded; {OFFLINE_HINT}"
        )
    if not hub_reachable():
        if cached:
            logger.warning("hub %s unreachable; loading %s from the local cache", hub_endpoint(), resolved)
            return ModelSource(resolved, local=False, local_files_only=True)
        raise ModelLoadError(
            f"model {resolved!r} is not a local folder and not in the local Hugging Face cache, and no "
            f"network is reachable (the hub {hub_endpoint()} did not answer within {HUB_PROBE_TIMEOUT_S:g} s); "
            f"{OFFLINE_HINT}"
        )
    return ModelSource(resolved, local=False, local_files_only=False)


# --------------------------------------------------------------------------------------------------
# Loading


def _hub_kwargs(source: ModelSource, cache_dir: PathLike | None, revision: str | None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"trust_remote_code": False}
    if not source.local:
        kwargs["local_files_only"] = source.local_files_only
        if cache_dir is not None:
            kwargs["cache_dir"] = str(cache_dir)
        if revision is not None:
            kwargs["revision"] = revision
    return kwargs


def _wrap(source: ModelSource, what: str, err: Exception) -> ModelLoadError:
    first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return ModelLoadError(f"cannot load the {what} of model {source.location!r}: {first_line}")


def _use_safetensors(source: ModelSource, requested: bool | None) -> bool | None:
    """``True`` unless a local folder has only pickled (``.bin``) weights, which then load with a warning."""
    if requested is not None or not source.local:
        return True if requested is None else requested
    names = {p.name for p in Path(source.location).iterdir()}
    if names.intersection({"model.safetensors", "model.safetensors.index.json"}):
        return True
    logger.warning("%s has no safetensors weights; loading its pytorch_model.bin", source.location)
    return None


def load_config(source: ModelSource, *, cache_dir: PathLike | None = None, revision: str | None = None) -> "PretrainedConfig":
    """The ``PretrainedConfig`` of a located model (no weights are read)."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(source.location, **_hub_kwargs(source, cache_dir, revision))
    except (OSError, ValueError, KeyError) as err:
        raise _wrap(source, "configuration", err) from err


def load_tokenizer(
    source: ModelSource, *, cache_dir: PathLike | None = None, revision: str | None = None
) -> "PreTrainedTokenizerBase":
    """The (fast) tokenizer of a located model."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source.location, **_hub_kwargs(source, cache_dir, revision))
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise _wrap(source, "tokenizer", err) from err
    if tokenizer.pad_token is None:
        raise ModelLoadError(f"the tokenizer of model {source.location!r} has no padding token")
    return tokenizer


def _accepts_pooling_flag(config: "PretrainedConfig") -> bool:
    """Whether ``AutoModel``'s class for ``config`` takes ``add_pooling_layer`` (BERT, XLM-R, ...)."""
    from transformers import MODEL_MAPPING

    model_class = MODEL_MAPPING.get(type(config), None)
    return model_class is not None and "add_pooling_layer" in inspect.signature(model_class.__init__).parameters


class LoadedEncoder(NamedTuple):
    """What :func:`load_encoder` returns: ``model, tokenizer, source = load_encoder(...)``."""

    model: "PreTrainedModel"
    tokenizer: "PreTrainedTokenizerBase"
    source: ModelSource

    @property
    def folder(self) -> Path | None:
        """The local folder the model came from (``None`` for a hub name served from the cache)."""
        return Path(self.source.location) if self.source.local else None


def load_encoder(
    name_or_path: PathLike | None,
    *,
    device: "str | torch.device | None" = None,
    dtype: "torch.dtype | None" = None,
    cache_dir: PathLike | None = None,
    revision: str | None = None,
    use_safetensors: bool | None = None,
) -> LoadedEncoder:
    """Load a transformer encoder (``AutoModel``, without its pooler) and its tokenizer.

    Args:
        name_or_path: a hub name (``xlm-roberta-base``), a local folder, or ``None`` /
            ``"multilingual-e5-small"`` for the offline default built by ``clir-ot models prepare``.
        device: where to put the model (default: CPU).
        dtype: parameter dtype (default: float32, also for checkpoints stored in half precision).
        cache_dir: Hugging Face cache folder for hub names (default: the hub's own).
        revision: hub revision (branch, tag or commit) for hub names.
        use_safetensors: ``None`` (default) requires safetensors weights for hub names and prefers them
            for local folders; ``False`` allows pickled ``.bin`` weights.

    Returns:
        ``(model, tokenizer, source)`` as a :class:`LoadedEncoder`; the model is in eval mode.

    Raises:
        ModelLoadError: the model cannot be located (offline, missing files) or loaded.
    """
    from safetensors import SafetensorError
    from transformers import AutoModel

    source = locate_model(name_or_path, cache_dir=cache_dir, revision=revision)
    config = load_config(source, cache_dir=cache_dir, revision=revision)
    tokenizer = load_tokenizer(source, cache_dir=cache_dir, revision=revision)
    kwargs = _hub_kwargs(source, cache_dir, revision)
    kwargs["use_safetensors"] = _use_safetensors(source, use_safetensors)
    kwargs["dtype"] = dtype or torch.float32
    if _accepts_pooling_flag(config):
        # the pooler is unused by clir_ot; passed with an explicit config, the flag reaches __init__
        kwargs["add_pooling_layer"] = False
    with _held_load_report() as held:
        try:
            model, info = AutoModel.from_pretrained(source.location, config=config, output_loading_info=True, **kwargs)
        except (OSError, ValueError, RuntimeError, KeyError, SafetensorError) as err:  # a cut-off weights file too
            for report in held:  # the keys that made it fail
                logger.warning("%s", report)
            raise _wrap(source, "weights", err) from err
    model.eval()
    if device is not None:
        model.to(device)
    left_out = _report_loading(source, info)
    logger.info(
        "loaded %s (%s, %s layers, hidden %s%s)", source.location, config.model_type,
        getattr(config, "num_hidden_layers", "?"), getattr(config, "hidden_size", "?"),
        f"; not part of the encoder, left out: {left_out}" if left_out else "",
    )
    return LoadedEncoder(model, tokenizer, source)


#: Weight names of the parts of a checkpoint that are not the encoder: task heads and the pooler, which
#: ``AutoModel`` (without its pooler) leaves out by design, e.g. reading a ``*ForSequenceClassification``.
_HEAD_PARTS = frozenset({"classifier", "pooler", "lm_head", "cls", "qa_outputs", "score", "pre_classifier",
                         "seq_relationship", "predictions"})


class _HoldLoadReport(logging.Filter):
    """Keeps transformers' LOAD REPORT table (MISSING / UNEXPECTED keys) off the log; :func:`load_encoder`
    says in one line what it means, and warns only when the keys are not the expected ones."""

    def __init__(self) -> None:
        super().__init__()
        self.held: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "LOAD REPORT" in message:
            self.held.append(message)
            return False
        return True


@contextlib.contextmanager
def _held_load_report() -> Iterator[list[str]]:
    hf_logger = logging.getLogger("transformers.modeling_utils")
    hold = _HoldLoadReport()
    hf_logger.addFilter(hold)
    try:
        yield hold.held
    finally:
        hf_logger.removeFilter(hold)


def _key_patterns(keys: Any) -> str:
    """Weight names, sorted and comma-separated; beyond five, layer numbers are folded (``encoder.layer.*.x``)."""
    names = {str(k) for k in keys}
    if len(names) > 5:
        names = {re.sub(r"(?<=\.)\d+(?=\.|$)", "*", k) for k in names}
    return ", ".join(sorted(names))


def _report_loading(source: ModelSource, info: Mapping[str, Any]) -> str:
    """Warn about weights that do not fit the encoder; return what was left out by design ("" if nothing).

    Expected: checkpoint weights of a head or the pooler that the encoder has no place for (UNEXPECTED
    keys under :data:`_HEAD_PARTS`). Anything else -- encoder weights missing from the checkpoint (they
    were freshly initialised), other unexpected weights, weights of another shape -- is a warning.
    """
    missing = set(info.get("missing_keys") or ())
    unexpected = set(info.get("unexpected_keys") or ())
    mismatched = {entry[0] if isinstance(entry, tuple) else entry for entry in info.get("mismatched_keys") or ()}
    by_design = {k for k in unexpected if _HEAD_PARTS.intersection(str(k).split("."))}
    problems = []
    if missing:
        problems.append(f"not in the checkpoint, freshly initialised: {_key_patterns(missing)}")
    if unexpected - by_design:
        problems.append(f"in the checkpoint but not in the model, ignored: {_key_patterns(unexpected - by_design)}")
    if mismatched:
        problems.append(f"of another shape in the checkpoint: {_key_patterns(mismatched)}")
    if problems:
        logger.warning("%s: the checkpoint's weights do not fit the encoder -- %s", source.location, "; ".join(problems))
    if not by_design:
        return ""
    parts = sorted({part for k in by_design for part in str(k).split(".") if part in _HEAD_PARTS})
    return f"its {' and '.join(parts)} weights ({len(by_design)})"


# --------------------------------------------------------------------------------------------------
# Batching shared by the model classes

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
ROBERTA_LIKE = ("roberta", "xlm-roberta", "camembert", "xlm-roberta-xl")


PRECISIONS = ("fp32", "fp16", "bf16")
#: Accepted by ``--dtype``: a precision, or ``auto`` (see :func:`resolve_precision`).
DTYPES = ("auto", *PRECISIONS)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AMX or AVX-512 BF16), where bf16 autocast pays off."""
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def hardware_id(device: "torch.device | str | None" = None) -> str:
    """What numerics and speed depend on besides the model: the processor (its model name, core count
    and bf16/int8 matrix features) or the GPU's name, and the torch version. bf16 kernels differ between
    AMX and AVX-512 BF16 processors, so a bf16 training or encoding is reproducible on the same
    ``hardware_id`` (and thread count), not across them. The quality guard keys its records by it, and
    training manifests record it."""
    kind = torch.device(device).type if device is not None else "cpu"
    if kind == "cuda":
        return f"cuda {torch.cuda.get_device_name(torch.device(device))}; torch {torch.__version__}"
    name, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                name = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    except OSError:
        pass
    features = sorted(flags & {"amx_bf16", "amx_int8", "avx512_bf16", "avx512_vnni", "avx512f", "avx2"})
    return f"cpu {name} x{os.cpu_count()} [{' '.join(features)}]; torch {torch.__version__}"


def resolve_precision(dtype: "str | None", device: "torch.device | str | None" = None) -> str:
    """Turn ``auto`` into a precision: bf16 on GPUs that support it and on CPUs with native bf16,
    fp32 elsewhere. Other values are checked and returned as they are."""
    name = dtype or "fp32"
    if name not in DTYPES:
        raise ConfigError(f"unknown precision {dtype!r}; valid: {', '.join(DTYPES)}")
    if name != "auto":
        return name
    device = torch.device(device) if device is not None else torch.device("cpu")
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if device.type == "cpu" and cpu_has_native_bf16() else "fp32"


def compute_precision(device: "torch.device", dtype: "str | torch.dtype | None" = None) -> contextlib.AbstractContextManager:
    """A context that runs the forward pass in ``dtype`` (``fp32``, ``fp16``, ``bf16`` or a torch dtype).

    ``None``/``fp32`` run in the model's own dtype; the half precisions use ``torch.autocast`` on
    ``device``, so weights stay as they are and the caller still gets float32 arrays back.
    """
    names = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}
    name = names.get(dtype, dtype) if dtype is not None else "fp32"  # type: ignore[call-overload]
    if name == "auto":
        name = resolve_precision("auto", device)
    if name not in PRECISIONS:
        raise ConfigError(f"unknown precision {dtype!r}; valid: {', '.join(PRECISIONS)}")
    if name == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.float16 if name == "fp16" else torch.bfloat16)


def max_sequence_length(encoder: "PreTrainedModel", tokenizer: "PreTrainedTokenizerBase") -> int:
    """The longest input (special tokens included) that both the tokenizer and the position table allow.

    RoBERTa-family models start positions at ``padding_idx + 1``, so two rows are not usable.
    """
    config = encoder.config
    limit = int(getattr(config, "max_position_embeddings", 512) or 512)
    if config.model_type in ROBERTA_LIKE:
        limit -= int(config.pad_token_id or 0) + 1
    tokenizer_limit = int(getattr(tokenizer, "model_max_length", limit) or limit)
    return min(limit, tokenizer_limit)


def iter_length_sorted_batches(
    count: int,
    tokenize: Callable[[Sequence[int]], dict[str, list[list[int]]]],
    *,
    batch_size: int,
    pad_token_id: int,
    chunk_size: int | None = None,
    show_progress: bool | None = None,
    desc: str = "encoding",
) -> Iterator[tuple[np.ndarray, dict[str, "torch.Tensor"]]]:
    """Yield ``(indices, tensors)`` batches of ``count`` inputs, each padded only to its own longest input.

    Inputs are tokenized ``chunk_size`` at a time (default ``64 * batch_size``) by ``tokenize``, which
    maps input indices to the tokenizer's unpadded output; within a chunk they are sorted by length,
    longest first, so batches hold inputs of similar length and padding is minimal. ``indices`` are the
    positions of the batch's inputs in the original order. A tqdm bar counts inputs; by default it is
    shown when there are more than 10 batches.
    """
    if batch_size < 1:
        raise ConfigError(f"batch size must be at least 1, got {batch_size}")
    chunk = max(batch_size, chunk_size or 64 * batch_size)
    if show_progress is None:
        show_progress = count > 10 * batch_size
    with progress_bar(total=count, desc=desc, unit="text", disable=not show_progress) as bar:
        for start in range(0, count, chunk):
            positions = list(range(start, min(count, start + chunk)))
            encoded = tokenize(positions)
            lengths = [len(ids) for ids in encoded["input_ids"]]
            order = sorted(range(len(positions)), key=lambda i: -lengths[i])
            keys = [k for k in MODEL_INPUTS if k in encoded]
            for offset in range(0, len(order), batch_size):
                rows = order[offset : offset + batch_size]
                width = lengths[rows[0]]
                tensors = {}
                for key in keys:
                    array = np.full((len(rows), width), pad_token_id if key == "input_ids" else 0, dtype=np.int64)
                    for r, i in enumerate(rows):
                        array[r, : lengths[i]] = encoded[key][i]
                    tensors[key] = torch.from_numpy(array)
                yield np.asarray(rows, dtype=np.int64) + start, tensors
                bar.update(len(rows))


def run_batched(
    module: "torch.nn.Module",
    out: np.ndarray,
    tokenize: Callable[[Sequence[int]], dict[str, list[list[int]]]],
    *,
    batch_size: int,
    pad_token_id: int,
    show_progress: bool | None = None,
    dtype: "str | torch.dtype | None" = None,
    desc: str = "encoding",
    forward: "Callable[[dict[str, torch.Tensor]], torch.Tensor] | None" = None,
) -> np.ndarray:
    """Fill ``out`` (one row per input, in input order) with ``module(**batch)`` over length-sorted batches.

    Runs with dropout off (the module's train/eval mode is restored afterwards), under
    ``torch.inference_mode`` and the compute precision ``dtype`` (see :func:`compute_precision`).
    ``tokenize`` maps input positions to unpadded tokenizer output (see :func:`iter_length_sorted_batches`).
    ``forward`` (batch -> outputs), if given, replaces ``module(**batch)``: an inference path of
    :mod:`clir_ot.models.backends`, which sets its own precision (then leave ``dtype`` unset).
    """
    device = next(module.parameters()).device
    was_training = module.training
    module.eval()
    try:
        with torch.inference_mode(), compute_precision(device, dtype):
            for rows, batch in iter_length_sorted_batches(
                len(out), tokenize, batch_size=batch_size, pad_token_id=pad_token_id,
                show_progress=show_progress, desc=desc,
            ):
                if forward is not None:
                    result = forward(batch)
                else:
                    result = module(**{k: v.to(device) for k, v in batch.items()})
                out[rows] = result.float().cpu().numpy()
    finally:
        module.train(was_training)
    return out


def parameters_digest(model: "torch.nn.Module") -> str:
    """SHA-256 of a model's parameters and buffers (names, shapes, dtypes and values): what a resumed
    job checks it still has the same teacher or reranker by (a path can be retrained in place)."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}\n".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()
