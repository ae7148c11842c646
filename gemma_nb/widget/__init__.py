"""The chat widget (`gemma_nb.Chat`): imported only on use, so `import gemma_nb` stays free of
ipywidgets and anywidget."""

from .chat import Chat, ChatBusyError

__all__ = ["Chat", "ChatBusyError"]
