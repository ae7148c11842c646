"""Log-likelihood of each choice's continuation after a shared context, computed once.

Tokens follow lm-evaluation-harness (`HFLM._encode_pair`): trailing spaces of the context move to
the continuation, the context is encoded alone (BOS first), and a continuation's tokens are those
of `context + continuation` past the context's. The context is prefilled once into a KV cache;
the logits of its last position give every choice's first token, so single-token choices (MMLU's
" A".." D") cost one forward pass per item. Longer choices run token by token (`decode_one`)
after the context, and the cache is rewound to the context before the next choice: each choice
overwrites the previous one's keys, never the context's.

Only the runtime's public `prefill`, `decode_one` and `new_cache` are used, and a token's
log-probability is its logit less the row's log-sum-exp (`logit_stats.row_stats`: one pass, not
a float64 log-softmax of the whole vocabulary for each scored position). A public batched
all-positions forward (`Model.forward(cache, ids, lengths, logits_index)`) would score all
choices' remaining tokens in one padded run per item.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import ContextLengthError
from ..logit_stats import row_stats
from .errors import EvalDataError

__all__ = ["encode_pair", "loglikelihoods", "log_softmax", "choice_distribution"]


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """In float64: the sums over a continuation's tokens then lose nothing to rounding."""
    z = logits.astype(np.float64)
    z -= z.max()
    return z - np.log(np.exp(z).sum())


def choice_distribution(logprobs: Sequence[float]) -> np.ndarray:
    """The choices' log-likelihoods renormalised into a probability over the choices."""
    return np.exp(log_softmax(np.asarray(logprobs, np.float64)))


def encode_pair(tokenizer: Any, context: str, continuations: Sequence[str]
                ) -> tuple[list[int], list[list[int]]]:
    """Context ids (BOS first) and each continuation's ids, split as the harness splits them."""
    spaces = len(context) - len(context.rstrip(" "))
    if spaces:
        context, continuations = context[:-spaces], [context[-spaces:] + c for c in continuations]
    context_ids = tokenizer.encode(context, add_bos=True)
    tails = [tokenizer.encode(context + c, add_bos=True)[len(context_ids):]
             for c in continuations]
    for c, tail in zip(continuations, tails):
        if not tail:
            raise EvalDataError(f"the continuation {c!r} has no tokens after the context")
    return context_ids, tails


def loglikelihoods(model: Any, context_ids: Sequence[int],
                   continuations: Sequence[Sequence[int]]) -> np.ndarray:
    """Sum of log p(token | everything before) over each continuation's tokens."""
    needed = len(context_ids) + max(len(c) for c in continuations) - 1
    if needed > model.config.context_length:
        raise ContextLengthError(f"the prompt and its longest choice need {needed} tokens; this "
                                 f"model's context is {model.config.context_length}")
    cache = model.new_cache(needed)
    first = model.prefill(cache, context_ids)
    first_logsumexp = row_stats(first).logsumexp
    scores = np.empty(len(continuations), np.float64)
    for i, tokens in enumerate(continuations):
        total = float(first[tokens[0]]) - first_logsumexp
        for previous, token in zip(tokens, tokens[1:]):
            logits = model.decode_one(cache, previous, reuse=True)
            total += float(logits[token]) - row_stats(logits).logsumexp
        cache.lengths[:] = len(context_ids)  # rewind: the next choice starts after the context
        scores[i] = total
    return scores
