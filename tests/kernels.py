"""A real python3 kernel and its client, for the tests that speak to it as a front end does."""

from __future__ import annotations


class StartedKernel:
    """A started kernel (no history file) and a client whose channels are open."""

    def __init__(self, cwd: str):
        from jupyter_client import KernelManager

        self.manager = KernelManager(kernel_name="python3")
        self.manager.start_kernel(cwd=cwd, extra_arguments=["--HistoryManager.enabled=False"])
        self.client = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=60)

    def close(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)
