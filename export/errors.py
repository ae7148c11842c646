"""Exceptions the exporter raises, each with a message the user can act on."""

from gemma_nb.config import ConfigError, UnsupportedArchitectureError
from gemma_nb.errors import GemmaError

__all__ = [
    "ExportError",
    "ConfigError",
    "MissingTokenizerError",
    "MissingWeightsError",
    "UnsupportedArchitectureError",
    "UnsupportedTensorTypeError",
    "CorruptWeightsError",
]


class ExportError(GemmaError):
    """Base class of export failures."""


class MissingTokenizerError(ExportError):
    """The weights source carries no usable tokenizer."""


class MissingWeightsError(ExportError):
    """The source holds no weights, or lacks tensors the model needs."""


class UnsupportedTensorTypeError(ExportError):
    """A tensor is stored in a type we cannot dequantize."""


class CorruptWeightsError(ExportError):
    """The weights file is truncated or not a valid GGUF/zip/safetensors file."""
