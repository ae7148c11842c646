"""Exceptions the library raises; the CLI and the magic turn each into one line for the user."""

__all__ = ["GemmaError", "ModelFolderError", "ContextLengthError", "EmptyPromptError",
           "MissingDependencyError"]


class GemmaError(Exception):
    """Base class of every error gemma-nb raises on purpose."""


class ModelFolderError(GemmaError):
    """The folder given to `load` is not a complete gemma-nb model folder."""


class ContextLengthError(GemmaError):
    """A prompt (plus the tokens asked for) does not fit in the model's context."""


class EmptyPromptError(GemmaError):
    """A prompt of no tokens (a text prompt always has at least BOS)."""


class MissingDependencyError(GemmaError):
    """An optional piece (pandas, matplotlib, ipywidgets, Dask) is not installed; the message
    names the extra that brings it."""
