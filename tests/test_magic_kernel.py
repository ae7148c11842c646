"""The %%gemma magic in a real IPython kernel (jupyter_client): what a front end receives.

Each decode step of the tiny model is slowed to ~20 ms inside the kernel, so an answer streams
for seconds (the tiny model alone finishes 200 tokens in a tenth of a second). Every wait is
bounded.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from kernels import StartedKernel

STEP_S = 0.02  # seconds added to each decode step inside the kernel


class Kernel(StartedKernel):
    """A started python3 kernel and a client, with bounded waits."""

    def execute(self, code: str, timeout: float = 60,
                on_message: Callable[[dict[str, Any]], None] | None = None
                ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """(iopub messages of this execution, its execute_reply content)."""
        msg_id = self.client.execute(code)
        deadline = time.monotonic() + timeout
        messages = []
        while True:
            message = self.client.get_iopub_msg(timeout=self._left(deadline))
            if message["parent_header"].get("msg_id") != msg_id:
                continue
            messages.append(message)
            if on_message is not None:
                on_message(message)
            if (message["msg_type"] == "status"
                    and message["content"]["execution_state"] == "idle"):
                break
        while True:
            reply = self.client.get_shell_msg(timeout=self._left(deadline))
            if reply["parent_header"].get("msg_id") == msg_id:
                return messages, reply["content"]

    @staticmethod
    def _left(deadline: float) -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the kernel did not finish in time")
        return left


@pytest.fixture(scope="module")
def kernel(tiny_gemma2_model, tmp_path_factory):
    kernel = Kernel(str(tmp_path_factory.mktemp("kernel")))
    try:
        _, reply = kernel.execute(
            "%load_ext gemma_nb\n"
            f"model = %gemma load {tiny_gemma2_model.path}\n"
            "import time\n"
            "_decode_one = model.decode_one\n"
            "def _slow_decode_one(cache, token, reuse=False):\n"
            f"    time.sleep({STEP_S})\n"
            "    return _decode_one(cache, token, reuse)\n"
            "model.decode_one = _slow_decode_one\n",
            timeout=120)
        assert reply["status"] == "ok", reply
        yield kernel
    finally:
        kernel.close()


def of_type(messages, *types):
    return [m for m in messages if m["msg_type"] in types]


def stdout(messages) -> str:
    return "".join(m["content"]["text"] for m in of_type(messages, "stream")
                   if m["content"]["name"] == "stdout")


def test_streaming_sends_several_display_updates_before_the_final_one(kernel):
    messages, reply = kernel.execute("%%gemma --raw --max-tokens 100\nthe cat", timeout=60)
    assert reply["status"] == "ok"
    displays = of_type(messages, "display_data")
    updates = of_type(messages, "update_display_data")
    assert len(displays) == 1 and not of_type(messages, "execute_result", "error")
    display_id = displays[0]["content"]["transient"]["display_id"]
    assert {u["content"]["transient"]["display_id"] for u in updates} == {display_id}
    streaming, final = updates[:-1], updates[-1]["content"]
    # 100 steps of >= 20 ms (>= 2 s) at <= ~7 updates a second: several, fewer than tokens.
    assert 5 <= len(streaming) < 60
    texts = [u["content"]["data"]["text/plain"] for u in streaming]
    assert all(len(b) >= len(a) for a, b in zip(texts, texts[1:])) and texts[0] != texts[-1]
    assert "text/markdown" in final["data"]
    plain = final["data"]["text/plain"]
    assert "100 answer tokens" in plain and "tok/s" in plain


def test_output_metadata_records_the_model_the_settings_and_the_seed(kernel, tiny_gemma2_model):
    messages, _ = kernel.execute("%%gemma --temperature 0.8 --top-p 0.9 --max-tokens 5\nhi")
    meta = of_type(messages, "update_display_data")[-1]["content"]["metadata"]["gemma_nb"]
    assert meta["model"]["source_sha256"] == tiny_gemma2_model.info["exporter"]["source_sha256"]
    assert meta["sampling"]["temperature"] == 0.8 and meta["sampling"]["top_p"] == 0.9
    assert isinstance(meta["seed"], int) and meta["prompt_tokens"] > 0


def test_out_stores_the_result_in_the_kernel(kernel):
    kernel.execute("%%gemma --raw --max-tokens 6 -o answer\nthe cat")
    messages, _ = kernel.execute(
        "print(type(answer).__name__, len(answer.token_ids), len(answer.logprobs), "
        "answer.finish_reason, answer.timings.prompt_tokens > 0)")
    assert stdout(messages) == "Answer 6 6 length True\n"


def test_interrupt_keeps_the_partial_answer_marked_stopped_and_the_next_cell_runs(kernel):
    interrupted = []

    def interrupt_once_streaming(message):
        if message["msg_type"] == "update_display_data" and not interrupted:
            time.sleep(0.3)
            kernel.manager.interrupt_kernel()
            interrupted.append(time.monotonic())

    # 240 tokens at >= 20 ms each: several seconds, so the interrupt lands mid-answer.
    messages, reply = kernel.execute("%%gemma --raw --max-tokens 240 -o partial\nthe cat",
                                     timeout=60, on_message=interrupt_once_streaming)
    assert interrupted and not of_type(messages, "error")
    final = of_type(messages, "update_display_data")[-1]["content"]
    plain = final["data"]["text/plain"]
    assert plain.rstrip().endswith("stopped") and final["metadata"]["gemma_nb"][
        "finish_reason"] == "interrupted"
    answer_tokens = final["metadata"]["gemma_nb"]["answer_tokens"]
    assert 0 < answer_tokens < 240 and plain.split("\n\n")[0]  # a partial answer is shown

    messages, reply = kernel.execute(
        "%%gemma --raw --max-tokens 5 -o after\nthe cat\n", timeout=60)
    assert reply["status"] == "ok"
    assert "max tokens reached" in of_type(messages, "update_display_data")[-1][
        "content"]["data"]["text/plain"]
    messages, _ = kernel.execute("print(partial.stopped, len(partial.token_ids), "
                                 "after.finish_reason, len(after.token_ids))")
    assert stdout(messages) == f"True {answer_tokens} length 5\n"


@pytest.mark.parametrize("source, message", [
    ("%%gemma --foo\nhi", "unrecognized arguments: --foo"),
    ("%%gemma --temperature abc\nhi", "not a number: 'abc'"),
    ("%%gemma --max-tokens 0\nhi", "must be at least 1"),
    ("%gemma load /no/such/model", "/no/such/model is neither a model folder"),
    ("%%gemma -o 1abc\nhi", "'1abc' is not a valid Python variable name"),
])
def test_bad_options_print_one_line_and_the_kernel_goes_on(kernel, source, message):
    messages, _ = kernel.execute(source)
    streams = of_type(messages, "stream")
    assert not of_type(messages, "error", "display_data")
    assert len(streams) == 1 and streams[0]["content"]["name"] == "stderr"
    text = streams[0]["content"]["text"]
    assert text.startswith("UsageError: %") and text.count("\n") == 1 and message in text
    messages, reply = kernel.execute("print(1 + 1)")
    assert reply["status"] == "ok" and stdout(messages) == "2\n"

