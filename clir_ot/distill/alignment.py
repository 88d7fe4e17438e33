"""Look at an OT plan: the soft token alignment between an English sentence and its translation.

:func:`align_pair` encodes the English side with the teacher and the foreign side with the student
(the same model for a zero-shot look), solves the entropic OT problem of
:class:`~clir_ot.distill.OTAlignmentLoss` over the content tokens, and returns the tokens and the
plan; :func:`plot_plan` draws it as a heatmap (rows: English tokens, columns: foreign tokens; each
row rescaled to sum to 1, so a dark cell is where that English token sends its mass).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from clir_ot.distill.losses import OTAlignmentLoss
from clir_ot.distill.masks import content_token_mask
from clir_ot.distill.trainer import encode_states
from clir_ot.io import atomic_open

__all__ = ["PairAlignment", "align_pair", "plot_plan"]


@dataclass
class PairAlignment:
    english_tokens: list[str]
    foreign_tokens: list[str]
    plan: np.ndarray   # (len(english_tokens), len(foreign_tokens)), sums to 1
    cost: float        # <P, C>_F

    def best_match(self, english_token: str) -> str:
        """The foreign token that receives most of ``english_token``'s mass (first occurrence)."""
        i = self.english_tokens.index(english_token)
        return self.foreign_tokens[int(self.plan[i].argmax())]


def _states(model, text: str, layer: int):
    tok = model.tokenizer
    prefix = getattr(model.config, "passage_prefix", "") if not hasattr(model, "head") else ""
    batch = tok([prefix + text], return_tensors="pt", truncation=True, max_length=256)
    n_prefix = len(tok(prefix.rstrip(), add_special_tokens=False)["input_ids"]) if prefix else 0
    mask = content_token_mask(batch["input_ids"], batch["attention_mask"], sorted(set(tok.all_special_ids)), n_prefix)
    inputs = {k: v.to(model.device) for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    with torch.no_grad():
        states, _ = encode_states(model, (layer,), **inputs)
    tokens = tok.convert_ids_to_tokens(batch["input_ids"][0][mask[0]].tolist())
    return states[0].float(), mask.to(model.device), tokens


def align_pair(teacher, student, english: str, foreign: str, *, layer: int = -1, epsilon: float = 0.1,
               epsilon_mode: str = "relative", centre: bool = False) -> PairAlignment:
    """The OT plan between ``english`` (encoded by ``teacher``) and ``foreign`` (by ``student``)."""
    h_t, m_t, tokens_t = _states(teacher, english, layer)
    h_s, m_s, tokens_s = _states(student, foreign, layer)
    result = OTAlignmentLoss(epsilon=epsilon, epsilon_mode=epsilon_mode, centre=centre, tol=1e-6,
                             max_iter=5000).plan(h_t, h_s, m_t, m_s)
    plan = result.plan[0][m_t[0]][:, m_s[0]].cpu().numpy()
    return PairAlignment(tokens_t, tokens_s, plan, float(result.cost[0]))


def plot_plan(alignment: PairAlignment, path: str | Path, title: str = "") -> Path:
    """Save the plan as a heatmap PNG (each English row normalised to sum to 1) atomically."""
    import matplotlib  # plotting only: imported here, and the Agg backend is chosen before pyplot

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = alignment.plan / alignment.plan.sum(1, keepdims=True)
    m, n = rows.shape
    figure, axis = plt.subplots(figsize=(max(4.0, 0.42 * n + 1.5), max(3.0, 0.36 * m + 1.2)))
    image = axis.imshow(rows, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    axis.set_xticks(range(n), [t.lstrip("▁") or "▁" for t in alignment.foreign_tokens], rotation=70, fontsize=8)
    axis.set_yticks(range(m), [t.lstrip("▁") or "▁" for t in alignment.english_tokens], fontsize=8)
    axis.set_xlabel("foreign tokens (student)")
    axis.set_ylabel("English tokens (teacher)")
    axis.set_title(title or f"OT plan, rows normalised (<P, C> = {alignment.cost:.3f})", fontsize=9)
    figure.colorbar(image, ax=axis, fraction=0.03)
    figure.tight_layout()
    path = Path(path)
    try:
        with atomic_open(path, "wb") as handle:
            figure.savefig(handle, format="png", dpi=130)
    finally:
        plt.close(figure)
    return path
