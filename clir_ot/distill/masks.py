"""Which tokens take part in distillation: content tokens only.

Special tokens (``[CLS]``, ``[SEP]``, ``<s>``, ``</s>``), padding and prefix tokens -- a prompt such
as E5's ``passage: ``, or, in ``query`` encoding mode, the English query placed before the passage --
carry no meaning of the sentence to align, so they get no mass in the OT plan and take no part in
pooling. :func:`content_token_mask` builds that mask from a tokenizer's output.
"""
from __future__ import annotations

from typing import Iterable

import torch

__all__ = ["content_token_mask"]


def content_token_mask(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    special_ids: Iterable[int] | torch.Tensor,
    prefix_length: int | torch.Tensor = 0,
) -> torch.Tensor:
    """True on the content tokens of each sequence: real, not special, and past the prefix.

    Args:
        input_ids: ``(batch, length)`` token ids.
        attention_mask: ``(batch, length)``, nonzero on real tokens (0 on padding, left or right).
        special_ids: the ids that never count as content, e.g. ``tokenizer.all_special_ids``.
        prefix_length: how many of the first non-special real tokens of each sequence are a prefix
            and get no mass: an int for all rows (E5's ``passage: `` is 3 tokens in its tokenizer), or
            a ``(batch,)`` tensor, one count per row (the query's token count in ``query`` mode,
            where the input is ``[CLS] query [SEP] passage [SEP]``).

    Returns:
        A bool tensor ``(batch, length)``. A row may come out all False (e.g. a prefix longer than
        the text); the losses reject such rows with a message saying so.

    Example:
        >>> import torch
        >>> ids = torch.tensor([[101, 7, 8, 9, 102, 0]])      # [CLS] prefix w1 w2 [SEP] [PAD]
        >>> content_token_mask(ids, ids != 0, [0, 101, 102], prefix_length=1).tolist()
        [[False, False, True, True, False, False]]
    """
    if input_ids.dim() != 2 or attention_mask.shape != input_ids.shape:
        raise ValueError(
            f"content_token_mask: expected input_ids and attention_mask of the same shape (batch, length), "
            f"got {tuple(input_ids.shape)} and {tuple(attention_mask.shape)}; fix: pass the tokenizer's "
            "batched output with padding=True"
        )
    special = torch.as_tensor(list(special_ids) if not isinstance(special_ids, torch.Tensor) else special_ids,
                              dtype=input_ids.dtype, device=input_ids.device)
    real = attention_mask.bool() & ~torch.isin(input_ids, special)
    prefix = torch.as_tensor(prefix_length, device=input_ids.device)
    if prefix.dim() == 0:
        prefix = prefix.expand(input_ids.shape[0])
    elif prefix.shape != (input_ids.shape[0],):
        raise ValueError(
            f"content_token_mask: prefix_length must be an int or a (batch,) tensor = ({input_ids.shape[0]},), "
            f"got shape {tuple(prefix.shape)}"
        )
    if bool((prefix < 0).any()):
        raise ValueError(f"content_token_mask: prefix_length must be >= 0, got {prefix_length}")
    rank = real.long().cumsum(1)  # 1 on the first real non-special token, 2 on the second, ...
    return real & (rank > prefix.unsqueeze(1))
