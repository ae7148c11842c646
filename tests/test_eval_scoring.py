"""Per-choice log-likelihoods against transformers (acceptance 1), and the harness's token split.

The reference here is independent of gemma_nb: SentencePiece encodes the context and context +
continuation as lm-evaluation-harness does, transformers runs the tiny random Gemma-2 (in float64,
so that only our rounding counts) on the whole sequence, and the continuation's log-softmax
values are summed.
"""

from __future__ import annotations

import numpy as np
import pytest

from gemma_nb.eval import Item, MultipleChoiceTask
from gemma_nb.eval.prompts import ClozePrompt, MMLUPrompt
from gemma_nb.eval.runner import score_item
from gemma_nb.eval.scoring import encode_pair, loglikelihoods

TOLERANCE = 1e-3

# Contexts longer than the sliding window (8); choices of one to four tokens (the tiny vocabulary
# splits words into letters), two of them sharing a first token: the shared-context path, the
# decode path and the rewind between choices all count. Log-likelihoods of this random model are
# large (about -25 a token), so sums over longer choices exceed 1e-3 by fp32 rounding alone.
ITEMS = [
    Item("Once upon a time there was a small model that learned to",
         ("sleep", "the cat", "the", "write"), 0, "stories", "story"),
    Item("Questions: what is the capital of France? The capital of France is",
         ("the", "the cat", "sleep", "3"), 0, "", "capital"),
    Item("def add(a, b):\n    return a + b\n\nIn 2024 the team trained 3 models on",
         ("128", "3", "the", "write"), 0, "", "code"),
]


@pytest.fixture(scope="module")
def reference(tiny_gemma2_hf):
    """log p(continuation | context) from transformers and SentencePiece alone."""
    import sentencepiece as spm
    import torch
    from transformers import AutoModelForCausalLM

    sp = spm.SentencePieceProcessor(model_file=str(tiny_gemma2_hf / "tokenizer.model"))
    hf = AutoModelForCausalLM.from_pretrained(tiny_gemma2_hf, dtype=torch.float64,
                                              attn_implementation="eager").eval()

    def loglikelihood(context: str, continuation: str) -> float:
        context_ids = [sp.bos_id(), *sp.encode(context)]
        whole = [sp.bos_id(), *sp.encode(context + continuation)]
        with torch.no_grad():
            logits = hf(torch.tensor([whole]), use_cache=False).logits[0]
        logp = torch.log_softmax(logits.double(), dim=-1)
        return sum(float(logp[i - 1, whole[i]]) for i in range(len(context_ids), len(whole)))

    return loglikelihood


@pytest.mark.parametrize("prompt", [MMLUPrompt(), ClozePrompt()], ids=["mmlu", "cloze"])
def test_choice_loglikelihoods_match_transformers(tiny_gemma2_model, reference, prompt):
    task = MultipleChoiceTask("t", tuple(ITEMS), prompt)
    for item in ITEMS:
        record = score_item(tiny_gemma2_model, task, item)
        context = task.context(item)
        expected = [reference(context, " " + t) for t in prompt.targets(item)]
        assert np.abs(np.array(record["logprobs"]) - expected).max() < TOLERANCE, item.id


def test_cloze_choices_span_several_tokens(tiny_gemma2_model):
    """Guards the test above: the multi-token path (decode_one and rewinding) is exercised."""
    context = ClozePrompt().context(ITEMS[0], [])
    context_ids, tails = encode_pair(tiny_gemma2_model.tokenizer, context,
                                     [" " + c for c in ITEMS[0].choices])
    assert len(context_ids) > 8  # past the sliding window
    assert [len(t) for t in tails] == [4, 3, 1, 4] and tails[1][0] == tails[2][0]


def test_scores_equal_a_full_forward_of_each_choice(tiny_gemma2_model):
    """The shared-context cache (rewound between choices) gives what one full forward of
    context + choice gives for each choice alone."""
    model = tiny_gemma2_model
    context_ids, tails = encode_pair(model.tokenizer, "The quick brown fox jumps over the",
                                     [" lazy dog while the cat sleeps", " cat", " warm sun."])
    shared = loglikelihoods(model, context_ids, tails)
    for score, tail in zip(shared, tails):
        ids = context_ids + tail
        z = model.logits(ids).astype(np.float64)
        logp = z - z.max(-1, keepdims=True)
        logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
        alone = sum(logp[len(context_ids) + i - 1, t] for i, t in enumerate(tail))
        assert score == pytest.approx(alone, abs=1e-4)


def test_trailing_spaces_move_to_the_continuation(tiny_gemma2_model):
    """lm-evaluation-harness's _encode_pair: "Answer: " + "A" scores as "Answer:" + " A"."""
    tok = tiny_gemma2_model.tokenizer
    assert encode_pair(tok, "Answer: ", ["A", "B"]) == encode_pair(tok, "Answer:", [" A", " B"])


def test_context_starts_with_bos_and_continuations_are_the_tail(tiny_gemma2_model):
    tok = tiny_gemma2_model.tokenizer
    context_ids, tails = encode_pair(tok, "Paris is the", [" capital of France."])
    assert context_ids[0] == tok.bos_id
    assert context_ids + tails[0] == tok.encode("Paris is the capital of France.")


def test_single_token_choices_need_one_forward(tiny_gemma2_model, monkeypatch):
    """Like MMLU's " A".." D" on Gemma's vocabulary: every choice is read from the prefill's
    last logits, with no further run."""
    model = tiny_gemma2_model
    item = Item("The cat sleeps", ("the", "in", "a", "and"), 0)
    runs = []
    monkeypatch.setattr(model, "decode_one", lambda *a: runs.append(a))
    record = score_item(model, MultipleChoiceTask("t", (item,), ClozePrompt()), item)
    assert runs == [] and len(record["logprobs"]) == 4
