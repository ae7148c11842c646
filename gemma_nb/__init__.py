"""gemma-nb: Gemma models inside Jupyter, run with ONNX Runtime.

    import gemma_nb
    model = gemma_nb.load("gemma-3-270m")        # a folder made by `gemma-nb export`
    model.generate("The capital of France is", max_new_tokens=20).text

The runtime imports onnxruntime, numpy and sentencepiece only (never the exporter).
"""

from .signals import workers_started_deaf_to_interrupts

with workers_started_deaf_to_interrupts():  # numpy and onnxruntime start threads on import
    from .config import GemmaConfig
    from .errors import ContextLengthError, EmptyPromptError, GemmaError, ModelFolderError
    from .model import Generation, Model, Timings, load

__version__ = "0.1.0"

__all__ = ["load", "Model", "Generation", "Timings", "GemmaConfig", "GemmaError",
           "ModelFolderError", "ContextLengthError", "EmptyPromptError"]
# Also public: `gemma_nb.Chat`, the chat widget. Not in __all__, so `from gemma_nb import *`
# stays as light as `import gemma_nb`.


def __getattr__(name: str) -> object:
    """`gemma_nb.Chat` is imported on first use: anywidget and ipywidgets are notebook
    packages, not the runtime's."""
    if name == "Chat":
        try:
            from .widget import Chat
        except ImportError as exc:
            if exc.name not in ("anywidget", "ipywidgets"):
                raise
            raise ImportError(f"gemma_nb.Chat needs {exc.name}: pip install "
                              "'gemma-nb[notebook]'") from exc
        return Chat
    raise AttributeError(f"module 'gemma_nb' has no attribute {name!r}")


def load_ipython_extension(ipython) -> None:
    """`%load_ext gemma_nb`: register the %gemma / %%gemma magics (imported only here, so
    `import gemma_nb` does not pull in IPython)."""
    from .magic import load_ipython_extension as register

    register(ipython)
