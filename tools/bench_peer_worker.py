"""sentence-transformers' CrossEncoder backends for tools/bench_rerank.py, in this or another interpreter.

    python tools/bench_peer_worker.py --pairs PAIRS.json --folder ENCODER_FOLDER [--batch-size 32]

As a worker it reads one JSON command per line on stdin and answers one JSON line on stdout:
``{"load": PEER, "max_length": L}`` builds that backend (``{"ok": true}`` or ``{"error": reason}``),
``{"run": PEER, "max_length": L}`` scores all pairs once (``{"seconds": s}``). It imports only
sentence-transformers and its backends (never clir_ot), so it runs in an environment made for them,
e.g. sentence-transformers 5 with optimum-onnx and optimum-intel, whose transformers (< 4.58) clir_ot's
own environment (transformers 5) cannot hold.

The peers, as sentence-transformers' documentation (Cross Encoder > Speeding up Inference) builds them:
``torch`` (fp32), ``onnx`` (exported, fp32), ``onnx-O3`` (``export_optimized_onnx_model(..., "O3")``),
``onnx-qint8`` (``export_dynamic_quantized_onnx_model(..., "avx512_vnni")``), ``openvino`` (its default
precision for this CPU), ``openvino-qint8`` (static post-training quantization through optimum-intel's
``OVQuantizer``, as ``export_static_quantized_openvino_model`` does, but calibrated on 300 of the
benchmark's own pairs instead of GLUE SST-2, which needs the hub).
"""
from __future__ import annotations

import argparse
import atexit
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

logging.disable(logging.WARNING)


def describe(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0] if text else ''}"[:300]


def readable_tokenizer(folder: Path) -> None:
    """Make a tokenizer saved by transformers 5 (``tokenizer_class: TokenizersBackend``) loadable by an
    older transformers: the same ``tokenizer.json`` read by ``PreTrainedTokenizerFast``."""
    import transformers

    config_file = folder / "tokenizer_config.json"
    if not config_file.is_file() or not (folder / "tokenizer.json").is_file():
        return
    config = json.loads(config_file.read_text(encoding="utf-8"))
    if not hasattr(transformers, str(config.get("tokenizer_class"))):
        config["tokenizer_class"] = "PreTrainedTokenizerFast"
        config_file.write_text(json.dumps(config), encoding="utf-8")


def build_peer(peer: str, folder: Path, max_length: int, calibration: list[tuple[str, str]]):
    """A sentence-transformers ``CrossEncoder`` on ``folder`` (an encoder folder; copied, since the
    exports write into it) with backend ``peer``."""
    import warnings

    from sentence_transformers import CrossEncoder

    warnings.simplefilter("ignore")
    work = Path(tempfile.mkdtemp(prefix=f"st-{peer}-"))
    atexit.register(shutil.rmtree, work, ignore_errors=True)  # a copy of the weights, and the exports
    shutil.copytree(folder, work, dirs_exist_ok=True)
    readable_tokenizer(work)
    common = {"num_labels": 1, "max_length": max_length, "device": "cpu"}
    if peer == "torch":
        return CrossEncoder(str(work), **common)
    if peer == "onnx":
        return CrossEncoder(str(work), backend="onnx", **common)
    if peer == "onnx-O3":
        from sentence_transformers import export_optimized_onnx_model

        export_optimized_onnx_model(CrossEncoder(str(work), backend="onnx", **common), "O3", str(work))
        return CrossEncoder(str(work), backend="onnx", model_kwargs={"file_name": "onnx/model_O3.onnx"}, **common)
    if peer == "onnx-qint8":
        from sentence_transformers import export_dynamic_quantized_onnx_model

        export_dynamic_quantized_onnx_model(CrossEncoder(str(work), backend="onnx", **common), "avx512_vnni", str(work))
        return CrossEncoder(str(work), backend="onnx",
                            model_kwargs={"file_name": "onnx/model_qint8_avx512_vnni.onnx"}, **common)
    if peer == "openvino":
        return CrossEncoder(str(work), backend="openvino", **common)
    if peer == "openvino-qint8":
        from datasets import Dataset
        from optimum.intel.openvino import OVConfig, OVQuantizationConfig, OVQuantizer

        model = CrossEncoder(str(work), backend="openvino", **common)
        quantizer = OVQuantizer.from_pretrained(getattr(model, "transformers_model", None) or model.model)
        rows = calibration[:300]
        encoded = model.tokenizer([q for q, _ in rows], [p for _, p in rows], padding="max_length",
                                  max_length=max_length, truncation=True)
        dataset = Dataset.from_dict(dict(encoded))
        target = work / "openvino-qint8"
        quantizer.quantize(dataset, save_directory=str(target),
                           ov_config=OVConfig(quantization_config=OVQuantizationConfig(num_samples=len(rows))))
        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "sentencepiece.bpe.model",
                     "config.json"):
            if (work / name).is_file() and not (target / name).exists():
                shutil.copy(work / name, target / name)
        quantized = next(target.rglob("*.xml")).relative_to(target)
        return CrossEncoder(str(target), backend="openvino", model_kwargs={"file_name": str(quantized)}, **common)
    raise ValueError(f"unknown peer {peer!r}")


def set_max_length(model, max_length: int) -> None:
    """A built peer at another max length (sentence-transformers 5 calls it ``max_seq_length``)."""
    if hasattr(type(model), "max_seq_length"):
        model.max_seq_length = max_length
    else:
        model.max_length = max_length


def protocol_stream():
    """The answers' stream: the process's stdout; whatever a library prints (nncf's progress bars) goes
    to stderr instead, so no answer line is ever interleaved with it."""
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return answers


def serve(pairs: list[tuple[str, str]], folder: Path, batch_size: int) -> None:
    answers = protocol_stream()
    models: dict[str, object] = {}  # one build (export, quantization) per peer, reused at every max length
    failed: dict[str, str] = {}
    for line in sys.stdin:
        command = json.loads(line)
        peer, max_length = command.get("load") or command.get("run"), command["max_length"]
        if "load" in command:
            if peer not in models and peer not in failed:
                try:
                    models[peer] = build_peer(peer, folder, max_length, pairs)
                except Exception as err:  # noqa: BLE001 - the reason goes back to the benchmark
                    failed[peer] = describe(err)
            answer = {"error": failed[peer]} if peer in failed else {"ok": True}
        else:
            set_max_length(models[peer], max_length)
            start = time.perf_counter()
            models[peer].predict(pairs, batch_size=batch_size, show_progress_bar=False)
            answer = {"seconds": time.perf_counter() - start}
        answers.write(json.dumps(answer) + "\n")
        answers.flush()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=Path, required=True, help="JSON list of [query, passage] pairs")
    parser.add_argument("--folder", type=Path, required=True, help="the encoder folder (config, weights, tokenizer)")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    pairs = [tuple(p) for p in json.loads(args.pairs.read_text())]
    serve(pairs, args.folder, args.batch_size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
