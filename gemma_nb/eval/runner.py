"""Running a task on a model: one record per item, a progress bar, and a Report even when the
run is interrupted (Kernel > Interrupt / Ctrl-C keeps the items already scored). A run holds the
model's lock (`gemma_nb.exclusive`), so a chat widget answering on the same model waits for it,
and it for the widget."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import closing, nullcontext
from typing import Any

import numpy as np

from ..errors import ContextLengthError
from ..exclusive import exclusive
from .errors import EvalDataError
from .extract import extract_answer, is_match
from .items import Item, Problem
from .prompts import TARGET_DELIMITER
from .report import Report
from .scoring import choice_distribution, encode_pair, loglikelihoods
from .tasks import GenerationTask, MultipleChoiceTask

__all__ = ["evaluate", "score_item", "records_for", "model_name"]


def model_name(model: Any) -> str:
    """The model folder's name (it carries the dtype: gemma-3-270m-int4)."""
    return model.path.name


def score_item(model: Any, task: MultipleChoiceTask, item: Item) -> dict[str, Any]:
    """One item's record: per-choice log-likelihoods, probabilities, predictions."""
    start = time.perf_counter()
    context = task.context(item)
    targets = task.prompt.targets(item)
    try:
        context_ids, tails = encode_pair(model.tokenizer, context,
                                         [TARGET_DELIMITER + t for t in targets])
        scores = loglikelihoods(model, context_ids, tails)
    except EvalDataError as exc:
        raise EvalDataError(f"{item.id}: {exc}") from None
    except ContextLengthError as exc:
        raise ContextLengthError(f"{item.id}: {exc}") from None
    normalized = scores / np.array([len(t) for t in targets], np.float64)  # acc_norm: characters
    probs = choice_distribution(scores)
    pred, pred_norm = int(np.argmax(scores)), int(np.argmax(normalized))
    return {"id": item.id, "subject": item.subject, "question": item.question,
            "choices": list(item.choices), "answer": item.answer, "prompt": context,
            "logprobs": scores.tolist(), "probs": probs.tolist(), "pred": pred,
            "pred_norm": pred_norm, "correct": pred == item.answer,
            "correct_norm": pred_norm == item.answer, "confidence": float(probs[pred]),
            "tokens": len(context_ids), "seconds": time.perf_counter() - start}


def _solve_batch(model: Any, task: GenerationTask, problems: list[Problem]
                 ) -> list[dict[str, Any]]:
    """Greedy answers to a batch of problems (one padded `generate_batch`)."""
    start = time.perf_counter()
    prompts = [task.context(p) for p in problems]
    outputs = model.generate_batch(prompts, max_new_tokens=task.max_new_tokens,
                                   temperature=0.0, stop=list(task.stop))
    seconds = (time.perf_counter() - start) / len(problems)
    records = []
    for problem, prompt, output in zip(problems, prompts, outputs):
        extracted = extract_answer(output.text, task.extract)
        records.append({"id": problem.id, "subject": problem.subject,
                        "question": problem.question, "prompt": prompt, "output": output.text,
                        "extracted": extracted, "target": problem.target,
                        "correct": is_match(extracted, problem.target),
                        "tokens": output.timings.prompt_tokens, "seconds": seconds})
    return records


def records_for(model: Any, task: MultipleChoiceTask | GenerationTask, start: int, stop: int
                ) -> list[dict[str, Any]]:
    """The records of `task.items[start:stop]`: multiple choice item by item, generation in one
    `generate_batch`. Also a cluster task (`gemma_nb.cluster`): plain arguments in, records out."""
    if isinstance(task, GenerationTask):
        return _solve_batch(model, task, list(task.items[start:stop]))
    return [score_item(model, task, item) for item in task.items[start:stop]]


def _chunks(task: MultipleChoiceTask | GenerationTask, size: int) -> list[tuple[int, int]]:
    return [(i, min(i + size, len(task.items))) for i in range(0, len(task.items), size)]


def _scored(model: Any, task: MultipleChoiceTask | GenerationTask, batch_size: int
            ) -> Iterator[tuple[int, list[dict[str, Any]]]]:
    """(chunk position, records) in this process: one item at a time for multiple choice (the
    progress bar moves per item), one generation batch at a time."""
    size = batch_size if isinstance(task, GenerationTask) else 1
    for position, (start, stop) in enumerate(_chunks(task, size)):
        yield position, records_for(model, task, start, stop)


def _scored_on(cluster: Any, model: Any, task: MultipleChoiceTask | GenerationTask,
               batch_size: int) -> Iterator[tuple[int, list[dict[str, Any]]]]:
    """(chunk position, records) from the cluster's workers, in the order chunks finish;
    `batch_size` items per chunk (generation batches as in this process). Connects now: a
    cluster that cannot be reached is an error before any progress bar."""
    from ..cluster import ModelRef, completed, connect

    return completed(connect(cluster), ModelRef.of(model), records_for, task,
                     _chunks(task, batch_size))


def _progress_bar(total: int, desc: str, enabled: bool) -> Any:
    from tqdm.auto import tqdm  # a runtime dependency; .auto is a widget in a notebook

    # tqdm shows the rate (item/s) and the time left (ETA) by default
    return tqdm(total=total, desc=desc, unit="item", disable=not enabled)


def evaluate(model: Any, task: MultipleChoiceTask | GenerationTask, *, progress: bool = True,
             batch_size: int = 8, cluster: Any = None) -> Report:
    """Score every item of `task` with `model`; a Report of the items done, all of them unless
    interrupted. `batch_size` applies to generation tasks (prompts per `generate_batch`) and to
    a cluster's chunks. `cluster` runs the items on Dask workers instead of this process:
    "local", a scheduler address, a `distributed.Client` (see `gemma_nb.cluster`)."""
    # Here, the lock the magic and the chat widget take; on a cluster, the workers' own models.
    scored = (_scored(model, task, batch_size) if cluster is None
              else _scored_on(cluster, model, task, batch_size))
    chunks: dict[int, list[dict[str, Any]]] = {}
    kind = "generation" if isinstance(task, GenerationTask) else "multiple_choice"
    bar = _progress_bar(len(task.items), task.name, progress)
    start = time.perf_counter()
    interrupted = False
    done = right = 0

    def waiting() -> None:
        bar.set_description(f"{task.name} (waiting: the model is answering another request)")

    try:
        with exclusive(model, on_wait=waiting) if cluster is None else nullcontext(), \
                closing(scored):
            bar.set_description(task.name)
            for position, batch in scored:
                chunks[position] = batch
                done += len(batch)
                right += sum(r["correct"] for r in batch)
                bar.set_postfix(acc=f"{right / done:.3f}", refresh=False)
                bar.update(len(batch))
    except KeyboardInterrupt:  # keep what was scored; the model holds no state between items
        interrupted = True
    finally:
        bar.close()
    records = [r for position in sorted(chunks) for r in chunks[position]]
    return Report(task=task.name, model=model_name(model), kind=kind, records=records,
                  planned=len(task.items), elapsed_s=time.perf_counter() - start,
                  interrupted=interrupted)
