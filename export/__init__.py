"""gemma_export: Gemma weights (GGUF, .llamafile, Hugging Face) to an ONNX model folder.

The runtime (`gemma_nb`) never imports this package; only the CLI and the notebook magic call
it, to export a raw weights file on first use.
"""

__version__ = "0.1.0"

from .errors import *  # noqa: E402,F403
from .errors import __all__ as _errors
from .exporter import OutputExistsError, export  # noqa: E402

__all__ = ["export", "OutputExistsError", *_errors]
