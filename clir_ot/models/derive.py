"""Small models for tests: real models cut down to a corpus, and tiny random ones built in memory.

* :func:`trim_model` keeps only the vocabulary pieces that a corpus needs (and optionally the first
  ``layers`` layers) of a real model. Text made of kept pieces tokenizes to the same pieces and gets
  the same embeddings as with the full model (up to the layer cut), at a fraction of the size:
  multilingual-e5-small's 250k-piece embedding table is 96% of its weights.
* :func:`tiny_random_model` builds a randomly initialised BERT or XLM-R encoder (hidden 32, 2 layers)
  with a working word-level tokenizer over a list of texts, entirely in process: no files, no hub.
"""
from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import torch
from torch import nn

from clir_ot.errors import ConfigError
from clir_ot.formats import iter_lines
from clir_ot.io import PathLike
from clir_ot.models.cross_encoder import HEAD_FILE
from clir_ot.models.folder import SETTINGS_FILE, atomic_output_dir, check_output_dir, read_settings
from clir_ot.models.loading import load_config, load_encoder, locate_model

# transformers and tokenizers are imported inside the functions that build models and tokenizers:
# they take seconds to import, and the CLI reads this module for every verb.
if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerFast

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------------
# Trimming a real model


@dataclass(frozen=True)
class TrimReport:
    """What :func:`trim_model` did."""

    output: Path
    vocab_before: int
    vocab_after: int
    layers_before: int
    layers_after: int


def read_text_lines(path: PathLike) -> list[str]:
    """The non-blank lines of a UTF-8 text file (``.gz`` too), one text each."""
    return [line for _, line in iter_lines(path) if line.strip()]


def _pieces_needed(tokenizer: Any, texts: Iterable[str]) -> set[int]:
    """Ids of all pieces that ``texts`` tokenize to, the special tokens, and every single-character
    piece of the texts' characters (so that unseen words still split into characters, not ``<unk>``)."""
    keep = set(tokenizer.all_special_ids)
    keep.update(tokenizer.added_tokens_decoder)  # ids of added tokens
    unk = tokenizer.unk_token_id
    texts = list(texts)
    for ids in tokenizer(texts, add_special_tokens=True)["input_ids"]:
        keep.update(ids)
    characters = set().union(*map(set, texts)) if texts else set()
    for ch in characters:
        for piece in (ch, "\u2581" + ch, "##" + ch):
            i = tokenizer.convert_tokens_to_ids(piece)
            if i is not None and i != unk:
                keep.add(i)
    return keep


def _remap_post_processor(node: Any, old2new: dict[int, int]) -> None:
    """Rewrite the token ids that a tokenizers post-processor (JSON) names."""
    if isinstance(node, list):
        for item in node:
            _remap_post_processor(item, old2new)
        return
    if not isinstance(node, dict):
        return
    kind = node.get("type")
    if kind == "TemplateProcessing":
        for token in (node.get("special_tokens") or {}).values():
            token["ids"] = [old2new[i] for i in token["ids"]]
    elif kind in ("RobertaProcessing", "BertProcessing"):
        for key in ("sep", "cls"):
            piece, old = node[key]
            node[key] = [piece, old2new[old]]
    elif kind == "Sequence":
        _remap_post_processor(node.get("processors", []), old2new)


def _trim_tokenizer(tokenizer: Any, keep: list[int]) -> "PreTrainedTokenizerFast":
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    old2new = {old: new for new, old in enumerate(keep)}
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    model = spec["model"]
    if model["type"] == "Unigram":
        # added tokens may lie past the model's own vocabulary; sorted, they keep their place after it
        model["vocab"] = [model["vocab"][i] for i in keep if i < len(model["vocab"])]
        if model.get("unk_id") is not None:
            model["unk_id"] = old2new[model["unk_id"]]
    elif model["type"] in ("WordPiece", "WordLevel"):
        model["vocab"] = {piece: old2new[i] for piece, i in model["vocab"].items() if i in old2new}
    else:
        raise ConfigError(f"cannot trim a {model['type']} tokenizer (Unigram, WordPiece and WordLevel can be)")
    for added in spec.get("added_tokens", []):
        added["id"] = old2new[added["id"]]
    _remap_post_processor(spec.get("post_processor"), old2new)
    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(json.dumps(spec)),
        model_max_length=tokenizer.model_max_length,
        model_input_names=list(tokenizer.model_input_names),
        **tokenizer.special_tokens_map,
    )


def _trim_embeddings(model: "PreTrainedModel", keep: list[int], pad_id: int | None) -> None:
    old = model.get_input_embeddings()
    new = nn.Embedding(len(keep), old.embedding_dim, padding_idx=pad_id)
    new.weight.data.copy_(old.weight.data[keep])
    model.set_input_embeddings(new)
    model.config.vocab_size = len(keep)
    embeddings = getattr(model, "embeddings", None)
    if embeddings is not None and hasattr(embeddings, "padding_idx"):
        embeddings.padding_idx = pad_id  # RoBERTa-family position ids start after it


def _cut_layers(model: "PreTrainedModel", layers: int) -> None:
    """Keep only the first ``layers`` transformer layers of ``model`` (in place)."""
    config = model.config
    before = int(config.num_hidden_layers)
    if not 1 <= layers <= before:
        raise ConfigError(f"layers must be between 1 and {before}, got {layers}")
    encoder = getattr(model, "encoder", None)
    if encoder is None or not hasattr(encoder, "layer"):
        raise ConfigError(f"cannot cut layers of a {config.model_type} model (no encoder.layer list)")
    encoder.layer = encoder.layer[:layers]
    config.num_hidden_layers = layers


def _check_before_loading(base: PathLike | None, output: PathLike, layers: int | None, overwrite: bool) -> None:
    """The output folder and the layer count, checked from ``config.json`` before the weights load."""
    check_output_dir(output, overwrite=overwrite)
    if layers is not None:
        before = getattr(load_config(locate_model(base)), "num_hidden_layers", None)
        if before is not None and not 1 <= layers <= int(before):
            raise ConfigError(f"layers must be between 1 and {before}, got {layers}")


def _save_copy(loaded, model, tokenizer, output: Path, overwrite: bool) -> None:
    """Write ``model`` and ``tokenizer`` to ``output`` atomically, with the source's settings and head."""
    with atomic_output_dir(output, overwrite=overwrite) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if loaded.folder is not None:
            for name in (SETTINGS_FILE, HEAD_FILE):
                if (loaded.folder / name).is_file():
                    shutil.copy2(loaded.folder / name, tmp / name)


def trim_model(
    base: PathLike | None,
    output: PathLike,
    texts: Iterable[str],
    *,
    layers: int | None = None,
    overwrite: bool = False,
) -> TrimReport:
    """Write a copy of ``base`` that keeps only the vocabulary ``texts`` need, and optionally ``layers`` layers.

    Kept: every piece of the tokenized texts (with the model's query/passage prefixes too, if its
    ``clir_ot.json`` has any), the special tokens, and single-character pieces of the texts'
    characters. Ids are renumbered in their old order, so embeddings of kept pieces are unchanged;
    text made of kept pieces tokenizes as before and, with all layers kept, embeds identically.
    ``clir_ot.json`` and a cross-encoder head are copied unchanged.

    Args:
        base: the model folder (or hub name, or ``None`` for the offline default) to cut down.
        output: the folder to write (atomically).
        texts: the corpus whose pieces are kept.
        layers: keep only the first ``layers`` transformer layers (default: all).
        overwrite: replace an existing model folder at ``output``.
    """
    _check_before_loading(base, output, layers, overwrite)
    loaded = load_encoder(base)
    model, tokenizer = loaded.model, loaded.tokenizer
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError(f"cannot trim {loaded.source.location}: its tokenizer is not a fast tokenizer")
    texts = list(texts)
    if not texts:
        raise ConfigError("trimming needs at least one text")
    settings = read_settings(loaded.folder) if loaded.folder is not None else None
    prefixes = {(settings or {}).get(k, "") for k in ("query_prefix", "passage_prefix")} - {""}
    all_texts = texts + [p + t for p in sorted(prefixes) for t in texts]

    vocab_before = model.get_input_embeddings().num_embeddings
    keep = sorted(_pieces_needed(tokenizer, all_texts))
    old2new = {old: new for new, old in enumerate(keep)}
    trimmed_tokenizer = _trim_tokenizer(tokenizer, keep)

    config = model.config
    pad_id = old2new.get(config.pad_token_id) if config.pad_token_id is not None else None
    _trim_embeddings(model, keep, pad_id)
    config.pad_token_id = pad_id
    for attr in ("bos_token_id", "eos_token_id", "sep_token_id", "cls_token_id"):
        value = getattr(config, attr, None)
        if value is not None:
            setattr(config, attr, old2new.get(value))

    layers_before = int(config.num_hidden_layers)
    if layers is not None:
        _cut_layers(model, layers)
    output = Path(output)
    _save_copy(loaded, model, trimmed_tokenizer, output, overwrite)
    report = TrimReport(output, vocab_before, len(keep), layers_before, int(config.num_hidden_layers))
    logger.info("trimmed %s -> %s: vocabulary %d -> %d pieces, %d -> %d layers", loaded.source.location,
                output, report.vocab_before, report.vocab_after, report.layers_before, report.layers_after)
    return report


def keep_layers(base: PathLike | None, output: PathLike, layers: int, *, overwrite: bool = False) -> Path:
    """Write a copy of ``base`` with only its first ``layers`` transformer layers (full vocabulary).

    The smaller backbone of a scaling study: embeddings, tokenizer, ``clir_ot.json`` and any head are
    kept unchanged, so the copy is the same model cut at depth ``layers``.
    """
    _check_before_loading(base, output, layers, overwrite)
    loaded = load_encoder(base)
    before = int(loaded.model.config.num_hidden_layers)
    _cut_layers(loaded.model, layers)
    output = Path(output)
    _save_copy(loaded, loaded.model, loaded.tokenizer, output, overwrite)
    logger.info("cut %s to %d of %d layers -> %s", loaded.source.location, layers, before, output)
    return output


# --------------------------------------------------------------------------------------------------
# Tiny random models for unit tests

TINY_KINDS = ("bert", "xlm-roberta")

DEFAULT_TINY_TEXTS = (
    "query: who wrote the novel about the whale",
    "passage: Herman Melville wrote Moby-Dick in 1851.",
    "Wer schrieb den Roman über den Wal?",
    "Herman Melville schrieb Moby-Dick im Jahr 1851.",
    "¿Quién escribió la novela sobre la ballena?",
    "Mbuzi anakula nyasi shambani.",
    "The capital of France is Paris.",
    "La capitale de la France est Paris.",
)
"""Texts whose words make up the tiny tokenizer's vocabulary when none are given."""

# kind -> (special pieces in id order, special-token roles)
_SPECIALS = {
    "bert": (
        ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"],
        {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]",
         "mask_token": "[MASK]"},
    ),
    "xlm-roberta": (
        ["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        {"bos_token": "<s>", "pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>",
         "mask_token": "<mask>", "cls_token": "<s>", "sep_token": "</s>"},
    ),
}


def _tiny_tokenizer(kind: str, texts: Sequence[str], max_length: int) -> "PreTrainedTokenizerFast":
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    special_pieces, specials = _SPECIALS[kind]
    normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    pre_tokenizer = pre_tokenizers.Whitespace()
    words: dict[str, None] = {}
    for text in texts:
        for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)):
            words.setdefault(word)
    vocab = {piece: i for i, piece in enumerate(special_pieces + [w for w in words if w not in special_pieces])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token=specials["unk_token"]))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    cls, sep = specials["cls_token"], specials["sep_token"]
    if kind == "bert":
        pair = f"{cls} $A {sep} $B:1 {sep}:1"
        input_names = ["input_ids", "token_type_ids", "attention_mask"]
    else:
        pair = f"{cls} $A {sep} {sep} $B {sep}"
        input_names = ["input_ids", "attention_mask"]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{cls} $A {sep}", pair=pair, special_tokens=[(cls, vocab[cls]), (sep, vocab[sep])])
    return PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=max_length,
                                   model_input_names=input_names, **specials)


def tiny_random_model(
    kind: str = "bert",
    texts: Sequence[str] | None = None,
    *,
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 2,
    max_length: int = 128,
    seed: int = 0,
) -> tuple["PreTrainedModel", "PreTrainedTokenizerFast"]:
    """A randomly initialised encoder and a working tokenizer, built in process (no files, no hub).

    The tokenizer is word-level (NFKC, lower-cased, split on whitespace and punctuation) over the
    words of ``texts`` (default :data:`DEFAULT_TINY_TEXTS`); other words become the unknown token.

    Args:
        kind: ``bert`` (``BertModel``, [CLS]/[SEP], token type ids) or ``xlm-roberta``
            (``XLMRobertaModel``, <s>/</s>, positions offset by the padding id).
        texts: texts whose words form the vocabulary.
        hidden_size, num_layers, num_heads: model size (intermediate size is 2x hidden).
        max_length: longest input in tokens.
        seed: weights depend only on it (the global torch RNG is left untouched).

    Returns:
        ``(model, tokenizer)``, the model in eval mode and without a pooler.
    """
    from transformers import BertConfig, BertModel, XLMRobertaConfig, XLMRobertaModel

    if kind not in TINY_KINDS:
        raise ConfigError(f"unknown tiny model kind {kind!r}; valid: {', '.join(TINY_KINDS)}")
    tokenizer = _tiny_tokenizer(kind, list(texts or DEFAULT_TINY_TEXTS), max_length)
    common = dict(vocab_size=len(tokenizer), hidden_size=hidden_size, num_hidden_layers=num_layers,
                  num_attention_heads=num_heads, intermediate_size=2 * hidden_size, pad_token_id=tokenizer.pad_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if kind == "bert":
            model = BertModel(BertConfig(max_position_embeddings=max_length, type_vocab_size=2, **common),
                              add_pooling_layer=False)
        else:
            config = XLMRobertaConfig(max_position_embeddings=max_length + tokenizer.pad_token_id + 1,
                                      type_vocab_size=1, bos_token_id=tokenizer.bos_token_id,
                                      eos_token_id=tokenizer.eos_token_id, **common)
            model = XLMRobertaModel(config, add_pooling_layer=False)
    return model.eval(), tokenizer
