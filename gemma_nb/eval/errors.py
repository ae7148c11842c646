"""Errors of the evaluation package: bad data names its row, missing pieces say what to install."""

from __future__ import annotations

from ..errors import GemmaError, MissingDependencyError

__all__ = ["EvalDataError", "MissingColumnError", "EmptyChoicesError", "AnswerNotInChoicesError",
           "UnknownSubjectError", "NotEnoughExamplesError", "DatasetUnavailableError",
           "MissingDependencyError"]


class EvalDataError(GemmaError):
    """Evaluation data that cannot be scored; the message starts with the row it is about."""


class MissingColumnError(EvalDataError):
    """A row lacks a column (or a value) the layout needs: question, choices or answer."""


class EmptyChoicesError(EvalDataError):
    """A row's choice list is empty: there is nothing to score."""


class AnswerNotInChoicesError(EvalDataError):
    """A row's answer is neither a choice's index, its letter, nor its text."""


class UnknownSubjectError(EvalDataError):
    """A subject filter names a subject the data does not have."""


class NotEnoughExamplesError(EvalDataError):
    """Fewer few-shot examples exist for a subject than the shots asked for."""


class DatasetUnavailableError(GemmaError):
    """A data source cannot be reached: offline without a cached copy, or a package missing."""
