"""Input checks shared by the distillation losses: messages say what was expected, what came, and the fix."""
from __future__ import annotations

from typing import Sequence

import torch


def as_layers(states: torch.Tensor | Sequence[torch.Tensor], side: str, loss: str) -> list[torch.Tensor]:
    """One tensor, or a list/tuple of per-layer tensors, as a non-empty list."""
    if isinstance(states, torch.Tensor):
        return [states]
    if isinstance(states, (list, tuple)) and states and all(isinstance(s, torch.Tensor) for s in states):
        return list(states)
    raise TypeError(
        f"{loss}: expected the {side} states as a tensor (batch, length, dim) or a non-empty list of such "
        f"tensors (one per layer), got {type(states).__name__}"
    )


def check_token_states(states: torch.Tensor, mask: torch.Tensor, side: str, loss: str) -> torch.Tensor:
    """Check ``states`` (B, L, d) float and ``mask`` (B, L) with a content token in every row; return the bool mask."""
    if states.dim() != 3:
        raise ValueError(
            f"{loss}: expected {side} token states of shape (batch, length, dim), got shape "
            f"{tuple(states.shape)}; fix: pass the model's hidden states (last_hidden_state or hidden_states[k])"
        )
    if not states.is_floating_point():
        raise ValueError(f"{loss}: expected floating-point {side} states, got {states.dtype}")
    if not isinstance(mask, torch.Tensor) or mask.shape != states.shape[:2]:
        got = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise ValueError(
            f"{loss}: expected a {side} mask of shape (batch, length) = {tuple(states.shape[:2])}, got {got}; "
            "fix: build it with clir_ot.distill.content_token_mask from the same tokenizer output"
        )
    mask = mask.to(device=states.device, dtype=torch.bool)
    empty = (~mask.any(1)).nonzero().flatten().tolist()
    if empty:
        raise ValueError(
            f"{loss}: the {side} mask has no content token in batch row(s) {empty[:10]}; fix: drop empty "
            "texts, or shorten the prefix given to content_token_mask"
        )
    return mask


def check_same_batch_and_dim(teacher: torch.Tensor, student: torch.Tensor, loss: str) -> None:
    if teacher.shape[0] != student.shape[0] or teacher.shape[-1] != student.shape[-1]:
        raise ValueError(
            f"{loss}: teacher and student states must share batch size and hidden size, got teacher "
            f"{tuple(teacher.shape)} and student {tuple(student.shape)}; fix: pair each English text with "
            "its translation in the same batch row, and project the student to the teacher's hidden size"
        )


def as_float(x: torch.Tensor) -> torch.Tensor:
    """float64 stays float64; everything else (bf16/fp16 under autocast) is computed in float32."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()
