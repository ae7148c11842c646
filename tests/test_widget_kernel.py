"""gemma_nb.Chat in a real IPython kernel, spoken to as a front end speaks: comm messages.

The test plays the widget's view: it opens nothing itself, reads the widget's comm from the
kernel's output, sends the view's "ask" and "stop" messages, and reads the deltas and state
updates the kernel sends back. The tiny model's stream is slowed inside the kernel (STEP_S a
piece) so the answer lasts long enough to stop.
"""

from __future__ import annotations

import queue
import time
from typing import Any

import pytest

from kernels import StartedKernel

STEP_S = 0.02


class Front(StartedKernel):
    """A kernel and a client that plays a widget front end; every wait is bounded."""

    def __init__(self, cwd: str):
        super().__init__(cwd)
        self.iopub: list[dict[str, Any]] = []

    def execute(self, code: str, timeout: float = 120) -> dict[str, Any]:
        reply = self.client.execute_interactive(code, timeout=timeout,
                                                output_hook=self.iopub.append)
        assert reply["content"]["status"] == "ok", reply["content"]
        return reply

    def comm_send(self, comm_id: str, content: dict[str, Any]) -> None:
        self.client.shell_channel.send(self.client.session.msg(
            "comm_msg", {"comm_id": comm_id, "data": {"method": "custom", "content": content}}))

    def read(self, until, timeout: float = 60) -> None:
        """Collect iopub messages until `until(message)` holds for one."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                message = self.client.get_iopub_msg(timeout=0.2)
            except queue.Empty:
                continue
            self.iopub.append(message)
            if until(message):
                return
        raise TimeoutError("the kernel did not send what was expected in time")


def comm_data(message: dict[str, Any]) -> dict[str, Any]:
    return message["content"].get("data", {}) if message["msg_type"] == "comm_msg" else {}


def is_delta(message: dict[str, Any]) -> bool:
    data = comm_data(message)
    return data.get("method") == "custom" and data["content"].get("type") == "delta"


def answer_state(message: dict[str, Any]) -> str | None:
    """The state of the last answer in a state update that carries the log, else None."""
    data = comm_data(message)
    log = data.get("state", {}).get("_log") if data.get("method") == "update" else None
    answers = [e for e in log or [] if e["role"] == "assistant"]
    return answers[-1]["state"] if answers else None


@pytest.fixture(scope="module")
def front(tiny_gemma2_model, tmp_path_factory):
    front = Front(str(tmp_path_factory.mktemp("kernel")))
    try:
        front.execute(
            "import time, gemma_nb\n"
            "from gemma_nb.model import Stream\n"
            f"model = gemma_nb.load({str(tiny_gemma2_model.path)!r})\n"
            "_stream = model.stream\n"
            "def _slow(*args, **kwargs):\n"
            "    inner = _stream(*args, **kwargs)\n"
            "    def pieces():\n"
            "        try:\n"
            "            for piece in inner:\n"
            f"                time.sleep({STEP_S})\n"
            "                yield piece\n"
            "        finally:\n"
            "            inner.close()\n"
            "    return Stream(pieces(), inner.result)\n"
            "model.stream = _slow\n")
        yield front
    finally:
        front.close()


def test_the_kernel_streams_deltas_from_a_worker_and_stops_on_the_views_message(front):
    front.iopub.clear()
    front.execute("chat = gemma_nb.Chat(model, max_tokens=200)\nchat")
    opens = [m for m in front.iopub if m["msg_type"] == "comm_open"
             and m["content"]["data"]["state"].get("_model_name") == "AnyModel"]
    assert len(opens) == 1
    comm_id = opens[0]["content"]["comm_id"]
    assert any("application/vnd.jupyter.widget-view+json" in m["content"].get("data", {})
               for m in front.iopub if m["msg_type"] in ("display_data", "execute_result"))

    front.iopub.clear()
    front.comm_send(comm_id, {"type": "ask", "text": "Hello"})
    # The kernel's main thread handles the ask and goes idle; the answer streams on after it.
    front.read(lambda m: m["msg_type"] == "status"
               and m["content"]["execution_state"] == "idle")
    idle_at = len(front.iopub)
    front.read(lambda m: sum(map(is_delta, front.iopub[idle_at:])) >= 2)
    assert not [m for m in front.iopub if answer_state(m) in ("done", "stopped")]  # not over
    front.comm_send(comm_id, {"type": "stop"})
    front.read(lambda m: answer_state(m) == "stopped", timeout=10)
    deltas = [comm_data(m)["content"]["text"] for m in front.iopub if is_delta(m)]
    reply = front.execute("print(repr(chat.messages[-1]['content']), chat.busy)")
    printed = [m["content"]["text"] for m in front.iopub if m["msg_type"] == "stream"]
    assert printed[-1].strip() == f"{''.join(deltas)!r} False"  # partial text kept, idle
    assert reply["content"]["status"] == "ok"
