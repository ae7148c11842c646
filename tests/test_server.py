"""`gemma-nb serve`: the OpenAI-compatible server, run as a real process on loopback.

Most checks run on the tiny random model (fast; its text is gibberish but deterministic); the
official `openai` client and the disconnect timings run on the real Gemma 3 270M (`slow`).
Every wait is bounded and every server process is ended by its fixture.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from gemma_nb.chat import format_chat
from gemma_nb.server import exposure_warning
from gemma_nb.server_worker import Job, QueueFullError, Workers

START_TIMEOUT_S = 180  # loading the real model on a busy machine
REQUEST_TIMEOUT_S = 120
USER = [{"role": "user", "content": "Why is the sky blue?"}]
ENV = {k: v for k, v in os.environ.items() if k != "GEMMA_NB_API_KEY"}  # keys only where asked


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    log: Path

    def rss_bytes(self) -> int:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) * 1024

    def post(self, path: str, body: dict, **kwargs) -> httpx.Response:
        kwargs.setdefault("timeout", REQUEST_TIMEOUT_S)
        return httpx.post(self.url + path, json=body, **kwargs)


def start_server(model_dir: Path, log: Path, *args: str) -> Server:
    """`gemma-nb serve MODEL --port 0 ...` in a subprocess; waits until /health answers."""
    out = log.open("wb")  # a file, not a pipe: a full pipe would block the server's logging
    process = subprocess.Popen(
        [sys.executable, "-m", "gemma_nb.cli", "serve", str(model_dir), "--port", "0", *args],
        stdout=out, stderr=subprocess.STDOUT, env=ENV)
    out.close()
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the server exited ({process.returncode}): {log.read_text()}")
        found = re.search(r"at (http://127\.0\.0\.1:\d+)/v1", log.read_text())
        if found:
            try:
                if httpx.get(found.group(1) + "/health", timeout=5).status_code == 200:
                    return Server(found.group(1), process, log)
            except httpx.TransportError:
                pass
        time.sleep(0.1)
    stop_server(process)
    raise AssertionError(f"the server did not start in {START_TIMEOUT_S} s: {log.read_text()}")


def stop_server(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=15)


@pytest.fixture(scope="module")
def tiny_dir(tiny_gemma2_model) -> Path:
    return tiny_gemma2_model.path


@pytest.fixture(scope="module")
def server(tiny_dir, tmp_path_factory) -> Iterator[Server]:
    srv = start_server(tiny_dir, tmp_path_factory.mktemp("server") / "log.txt")
    yield srv
    stop_server(srv.process)


@pytest.fixture
def make_server(tmp_path) -> Iterator:
    """make_server(model_dir, *args) -> a Server with those options, stopped after the test."""
    started: list[Server] = []

    def make(model_dir: Path, *args: str) -> Server:
        started.append(start_server(model_dir, tmp_path / f"log{len(started)}.txt", *args))
        return started[-1]

    yield make
    for srv in started:
        stop_server(srv.process)


def sse_events(lines: Iterator[str]) -> list:
    """The JSON chunks of an SSE body up to `data: [DONE]` (then the string "[DONE]")."""
    events: list = []
    for line in lines:
        if not line.startswith("data: "):
            assert line == "", line
            continue
        data = line[len("data: "):]
        events.append(data if data == "[DONE]" else json.loads(data))
        if data == "[DONE]":
            break
    return events


def stream(srv: Server, path: str, body: dict) -> list:
    with httpx.stream("POST", srv.url + path, json={**body, "stream": True},
                      timeout=REQUEST_TIMEOUT_S) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        return sse_events(response.iter_lines())


def streamed_text(events: list, chat: bool = True) -> str:
    return "".join((c["choices"][0]["delta"].get("content") or "") if chat
                   else c["choices"][0]["text"] for c in events[:-1] if c["choices"])


def assert_openai_error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    return error


# ---------------------------------------------------------------------------------- endpoints


def test_health_and_models_name_the_served_model(server, tiny_dir):
    health = httpx.get(server.url + "/health", timeout=10).json()
    assert health["status"] == "ok" and set(health) == {"status", "running", "waiting"}
    models = httpx.get(server.url + "/v1/models", timeout=10).json()
    assert models["object"] == "list"
    assert [m["id"] for m in models["data"]] == [tiny_dir.name]
    one = httpx.get(f"{server.url}/v1/models/{tiny_dir.name}", timeout=10).json()
    assert one["id"] == tiny_dir.name and one["object"] == "model"


def test_chat_completion_is_model_chat_with_usage_from_the_tokenizer(server, tiny_gemma2_model):
    expected = tiny_gemma2_model.chat(USER, max_new_tokens=12)
    response = server.post("/v1/chat/completions", {"messages": USER, "max_tokens": 12,
                                                     "temperature": 0})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    [choice] = body["choices"]
    assert choice["message"] == {"role": "assistant", "content": expected.text}
    assert choice["finish_reason"] == expected.finish_reason == "length"
    prompt_tokens = len(tiny_gemma2_model.tokenizer.encode(format_chat(USER)))
    assert body["usage"] == {"prompt_tokens": prompt_tokens, "completion_tokens": 12,
                             "total_tokens": prompt_tokens + 12}


def test_completion_is_model_generate_and_defaults_to_16_tokens(server, tiny_gemma2_model):
    expected = tiny_gemma2_model.generate("The quick brown fox", max_new_tokens=16)
    response = server.post("/v1/completions", {"prompt": "The quick brown fox",
                                                "temperature": 0})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "text_completion"
    assert body["choices"][0]["text"] == expected.text
    assert body["usage"]["completion_tokens"] == len(expected.token_ids) == 16
    assert body["usage"]["prompt_tokens"] == len(
        tiny_gemma2_model.tokenizer.encode("The quick brown fox"))
    # A list of one prompt (what LangChain sends) is the same request.
    listed = server.post("/v1/completions", {"prompt": ["The quick brown fox"],
                                             "temperature": 0})
    assert listed.json()["choices"][0]["text"] == expected.text


def test_streamed_chat_is_role_pieces_finish_usage_done(server, tiny_gemma2_model):
    expected = tiny_gemma2_model.chat(USER, max_new_tokens=20)
    events = stream(server, "/v1/chat/completions",
                    {"messages": USER, "max_tokens": 20, "temperature": 0,
                     "stream_options": {"include_usage": True}})
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 20
    assert streamed_text(events) == expected.text
    assert len(chunks) > 4  # streamed in pieces, not in one chunk


def test_streamed_completion_joins_to_the_whole_text(server, tiny_gemma2_model):
    expected = tiny_gemma2_model.generate("Once upon a time", max_new_tokens=20)
    events = stream(server, "/v1/completions",
                    {"prompt": "Once upon a time", "max_tokens": 20, "temperature": 0})
    assert events[-1] == "[DONE]"
    assert all(c["object"] == "text_completion" for c in events[:-1])
    assert "usage" not in events[-2]  # not asked for
    assert events[-2]["choices"][0]["finish_reason"] == expected.finish_reason
    assert streamed_text(events, chat=False) == expected.text


def test_stop_strings_and_seed_reach_the_model(server, tiny_gemma2_model):
    full = tiny_gemma2_model.chat(USER, max_new_tokens=30).text
    stop = full[10:12]
    response = server.post("/v1/chat/completions", {"messages": USER, "max_tokens": 30,
                                                     "temperature": 0, "stop": [stop, "@@@"]})
    choice = response.json()["choices"][0]
    assert choice["message"]["content"] == full[: full.find(stop)]
    assert choice["finish_reason"] == "stop"

    sampled = tiny_gemma2_model.chat(USER, max_new_tokens=16, temperature=0.9, seed=7)
    for _ in range(2):
        response = server.post("/v1/chat/completions", {"messages": USER, "max_tokens": 16,
                                                         "temperature": 0.9, "seed": 7})
        assert response.json()["choices"][0]["message"]["content"] == sampled.text


# ---------------------------------------------------------------------------------- bad input


CHAT, COMPLETIONS = "/v1/chat/completions", "/v1/completions"
BAD_JSON = [
    ("malformed JSON", CHAT, b'{"messages": [', 400, None),
    ("not an object", CHAT, b"[1, 2]", 400, None),
    ("not UTF-8", CHAT, b"\xff\xfe\x00", 400, None),
]
BAD_FIELDS = [
    ("messages missing", CHAT, {"max_tokens": 4}, 400, "messages"),
    ("messages not a list", CHAT, {"messages": "hi"}, 400, "messages"),
    ("content a number", CHAT, {"messages": [{"role": "user", "content": 5}]}, 400,
     "messages.0.content"),
    ("unknown role", CHAT, {"messages": [{"role": "robot", "content": "hi"}]}, 400,
     "messages.0.role"),
    ("empty messages", CHAT, {"messages": []}, 400, "messages"),
    ("assistant first", CHAT, {"messages": [{"role": "assistant", "content": "hi"}]}, 400,
     "messages"),
    ("max_tokens a string", CHAT, {"messages": USER, "max_tokens": "5"}, 400, "max_tokens"),
    ("max_tokens zero", CHAT, {"messages": USER, "max_tokens": 0}, 400, "max_tokens"),
    ("max_tokens past the context", CHAT, {"messages": USER, "max_tokens": 10_000}, 400,
     "max_tokens"),
    ("temperature a string", CHAT, {"messages": USER, "temperature": "0.5"}, 400, "temperature"),
    ("temperature too high", CHAT, {"messages": USER, "temperature": 2.5}, 400, "temperature"),
    ("top_p zero", CHAT, {"messages": USER, "top_p": 0}, 400, "top_p"),
    ("stream an int", CHAT, {"messages": USER, "stream": 1}, 400, "stream"),
    ("stop a number", CHAT, {"messages": USER, "stop": 5}, 400, "stop"),
    ("five stops", CHAT, {"messages": USER, "stop": list("abcde")}, 400, "stop"),
    ("negative seed", CHAT, {"messages": USER, "seed": -1}, 400, "seed"),
    ("n=2", CHAT, {"messages": USER, "n": 2}, 400, "n"),
    ("unknown model", CHAT, {"messages": USER, "model": "gpt-4o"}, 404, "model"),
    ("prompt missing", COMPLETIONS, {"max_tokens": 4}, 400, "prompt"),
    ("prompt a number", COMPLETIONS, {"prompt": 5}, 400, "prompt"),
    ("two prompts", COMPLETIONS, {"prompt": ["a", "b"]}, 400, "prompt"),
    ("prompt past the context", COMPLETIONS, {"prompt": "word " * 300}, 400, "prompt"),
    ("unknown model", COMPLETIONS, {"prompt": "hi", "model": "davinci"}, 404, "model"),
]


def assert_still_serves(srv: Server) -> None:
    response = srv.post(CHAT, {"messages": USER, "max_tokens": 2})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("name, path, raw, status, param", BAD_JSON,
                         ids=[c[0] for c in BAD_JSON])
def test_bad_json_is_400_in_openai_shape(server, name, path, raw, status, param):
    response = httpx.post(server.url + path, content=raw, timeout=30,
                          headers={"Content-Type": "application/json"})
    assert assert_openai_error(response, status)["param"] == param
    assert_still_serves(server)


@pytest.mark.parametrize("name, path, body, status, param", BAD_FIELDS,
                         ids=[f"{c[1].split('/')[-1]}: {c[0]}" for c in BAD_FIELDS])
def test_bad_field_is_4xx_in_openai_shape(server, name, path, body, status, param):
    error = assert_openai_error(server.post(path, body), status)
    assert error["param"] == param
    if status == 404:
        assert error["code"] == "model_not_found"
    assert_still_serves(server)


def test_huge_body_is_413_in_openai_shape(server):
    body = {"messages": [{"role": "user", "content": "a" * (2 << 20)}]}
    assert_openai_error(server.post(CHAT, body), 413)
    assert_still_serves(server)


def test_unknown_path_and_method_are_openai_errors(server):
    assert_openai_error(httpx.get(server.url + "/v1/engines", timeout=10), 404)
    assert_openai_error(httpx.delete(server.url + "/v1/models", timeout=10), 405)


def test_json_without_a_content_type_is_accepted(server):
    """curl -d sends application/x-www-form-urlencoded; the body is still JSON."""
    response = httpx.post(server.url + CHAT, content=json.dumps({"messages": USER,
                                                                  "max_tokens": 2}),
                          headers={"Content-Type": "application/x-www-form-urlencoded"},
                          timeout=30)
    assert response.status_code == 200, response.text


# --------------------------------------------------------------------------------------- load


def test_20_concurrent_streams_are_each_the_answer_sent_alone(server):
    requests = [{"messages": [{"role": "user", "content": f"Question number {i}?"}],
                 "max_tokens": 48, "temperature": 0} for i in range(20)]
    alone = [streamed_text(stream(server, CHAT, r)) for r in requests]
    assert len(set(alone)) > 1  # different prompts, different answers: interleaving would show
    results: list = [None] * len(requests)
    barrier = threading.Barrier(len(requests), timeout=60)

    def client(i: int) -> None:
        barrier.wait()
        results[i] = stream(server, CHAT, requests[i])

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(requests))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=REQUEST_TIMEOUT_S)
    assert not any(t.is_alive() for t in threads)
    for events, expected in zip(results, alone):
        assert events is not None and events[-1] == "[DONE]"
        assert len({c["id"] for c in events[:-1]}) == 1  # one answer per stream
        assert streamed_text(events) == expected


def test_500_sequential_requests_grow_rss_less_than_50_mb(server):
    for i in range(20):  # warm-up: allocator pools, thread pools, first-use imports
        assert server.post(COMPLETIONS, {"prompt": f"warm {i}", "max_tokens": 4}).status_code == 200
    before = server.rss_bytes()
    with httpx.Client(base_url=server.url, timeout=REQUEST_TIMEOUT_S) as client:
        for i in range(500):
            if i % 2:
                response = client.post(CHAT, json={"messages": [
                    {"role": "user", "content": f"Request {i}"}], "max_tokens": 4,
                    "stream": i % 4 == 1})
            else:
                response = client.post(COMPLETIONS, json={"prompt": f"Request {i}",
                                                          "max_tokens": 4})
            assert response.status_code == 200, (i, response.text)
    growth = server.rss_bytes() - before
    print(f"\nserver RSS over 500 requests: {before / 2**20:.1f} MiB -> "
          f"{(before + growth) / 2**20:.1f} MiB ({growth / 2**20:+.1f} MiB)")
    assert growth < 50 * 2**20


def test_admission_stops_at_models_plus_queue():
    loop = asyncio.new_event_loop()
    try:
        workers = Workers([object(), object()], queue_size=1)  # not started: nothing runs
        for _ in range(3):
            workers.submit(Job([2], {}, loop))
        with pytest.raises(QueueFullError, match="busy"):
            workers.submit(Job([2], {}, loop))
        assert workers.waiting == 3
    finally:
        loop.close()


def test_a_client_gone_mid_stream_leaves_the_server_serving(server):
    with httpx.stream("POST", server.url + CHAT, timeout=30,
                      json={"messages": USER, "max_tokens": 200, "stream": True}) as response:
        lines = response.iter_lines()
        assert next(lines).startswith("data: ")
    start = time.monotonic()
    assert_still_serves(server)
    assert time.monotonic() - start < 10


def test_two_model_copies_serve_two_streams_at_once(make_server, tiny_dir):
    srv = make_server(tiny_dir, "--max-concurrency", "2", "--queue", "0")
    requests = [{"messages": [{"role": "user", "content": f"Question {i}?"}], "max_tokens": 200,
                 "temperature": 0} for i in range(2)]
    alone = [streamed_text(stream(srv, CHAT, r)) for r in requests]
    results: list = [None, None]
    barrier = threading.Barrier(2, timeout=60)

    def client(i: int) -> None:
        barrier.wait()
        results[i] = stream(srv, CHAT, requests[i])  # queue 0: a 429 would fail here

    threads = [threading.Thread(target=client, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=REQUEST_TIMEOUT_S)
    assert [streamed_text(events) for events in results] == alone


# ------------------------------------------------------------------------------ safety, CLI


def test_api_key_is_required_on_v1_when_set(make_server, tiny_dir):
    srv = make_server(tiny_dir, "--api-key", "s3cret")
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
        response = httpx.get(srv.url + "/v1/models", headers=headers, timeout=10)
        assert assert_openai_error(response, 401)["code"] == "invalid_api_key"
        assert_openai_error(srv.post(CHAT, {"messages": USER}, headers=headers), 401)
    good = {"Authorization": "Bearer s3cret"}
    assert httpx.get(srv.url + "/v1/models", headers=good, timeout=10).status_code == 200
    assert srv.post(CHAT, {"messages": USER, "max_tokens": 2}, headers=good).status_code == 200
    assert httpx.get(srv.url + "/health", timeout=10).status_code == 200  # for probes


@pytest.mark.parametrize("host, key, warns", [
    ("127.0.0.1", None, False), ("localhost", None, False), ("::1", None, False),
    ("0.0.0.0", None, True), ("::", None, True), ("192.168.1.5", None, True),
    ("myhost.example", None, True), ("0.0.0.0", "k", False),
])
def test_listening_beyond_loopback_without_a_key_warns(host, key, warns):
    assert (exposure_warning(host, key) is not None) == warns


def test_a_busy_port_is_one_clear_line(tiny_dir):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "gemma_nb.cli", "serve", str(tiny_dir),
                                 "--port", str(port)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith(f"gemma-nb: error: cannot listen on 127.0.0.1:{port}")


@pytest.mark.parametrize("args, message", [
    (["--max-concurrency", "0"], "--max-concurrency"),
    (["--queue", "-1"], "--queue"),
    (["--port", "70000"], "--port"),
])
def test_bad_serve_options_are_one_clear_line(tiny_dir, args, message):
    result = subprocess.run([sys.executable, "-m", "gemma_nb.cli", "serve", str(tiny_dir),
                             "--port", "0", *args], capture_output=True, text=True, timeout=60,
                            env=ENV)
    assert result.returncode == 1, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("gemma-nb: error: ") and message in line


def test_serving_a_missing_model_is_one_clear_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "gemma_nb.cli", "serve",
                             str(tmp_path / "nowhere"), "--port", "0"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.startswith("gemma-nb: error: ") and "nowhere" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


# ------------------------------------------------------------------------- the real model


@pytest.fixture(scope="module")
def real_server(real_model_dir, tmp_path_factory) -> Iterator[Server]:
    srv = start_server(real_model_dir, tmp_path_factory.mktemp("real-server") / "log.txt")
    yield srv
    stop_server(srv.process)


@pytest.mark.slow
def test_openai_client_chat_and_completions(real_server, real_model, real_model_dir):
    from openai import OpenAI

    client = OpenAI(base_url=real_server.url + "/v1", api_key="unused", max_retries=0,
                    timeout=REQUEST_TIMEOUT_S)
    assert [m.id for m in client.models.list()] == [real_model_dir.name]
    model_id = real_model_dir.name
    messages = [{"role": "system", "content": "Answer in one sentence."},
                {"role": "user", "content": "What is the capital of France?"}]
    expected = real_model.chat(messages, max_new_tokens=16)
    prompt_tokens = len(real_model.tokenizer.encode(format_chat(messages)))

    whole = client.chat.completions.create(model=model_id, messages=messages, max_tokens=16,
                                           temperature=0)
    assert whole.choices[0].message.content == expected.text and expected.text.strip()
    assert whole.choices[0].finish_reason == expected.finish_reason
    assert (whole.usage.prompt_tokens, whole.usage.completion_tokens) == (
        prompt_tokens, len(expected.token_ids))
    assert whole.usage.total_tokens == prompt_tokens + len(expected.token_ids)

    chunks = list(client.chat.completions.create(
        model=model_id, messages=messages, max_tokens=16, temperature=0, stream=True,
        stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == expected.text
    assert chunks[-1].usage.prompt_tokens == prompt_tokens
    assert chunks[-1].usage.completion_tokens == len(expected.token_ids)

    prompt = "The capital of France is"
    continued = real_model.generate(prompt, max_new_tokens=12)
    whole = client.completions.create(model=model_id, prompt=prompt, max_tokens=12,
                                      temperature=0)
    assert whole.choices[0].text == continued.text and continued.text.strip()
    assert whole.usage.prompt_tokens == len(real_model.tokenizer.encode(prompt))
    assert whole.usage.completion_tokens == len(continued.token_ids)
    pieces = list(client.completions.create(model=model_id, prompt=prompt, max_tokens=12,
                                            temperature=0, stream=True))
    assert "".join(p.choices[0].text for p in pieces if p.choices) == continued.text


def wait_until_idle(srv: Server, within_s: float) -> float:
    """Seconds until /health reports no running generation; fails after `within_s`."""
    start = time.monotonic()
    while time.monotonic() - start < within_s:
        if httpx.get(srv.url + "/health", timeout=10).json()["running"] == 0:
            return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError(f"the model was still generating {within_s} s after the client left")


COUNTING = {"prompt": "1, 2, 3, 4, 5, 6, 7,", "max_tokens": 4000, "temperature": 0}


@pytest.mark.slow
def test_a_client_gone_mid_stream_frees_the_model_at_once(real_server):
    """4000 tokens take minutes here; the model must be free within seconds of the disconnect."""
    with httpx.stream("POST", real_server.url + COMPLETIONS, json={**COUNTING, "stream": True},
                      timeout=REQUEST_TIMEOUT_S) as response:
        lines = response.iter_lines()
        received = [line for line, _ in zip(lines, range(8)) if line.startswith("data: ")]
        assert len(received) >= 3
        assert httpx.get(real_server.url + "/health", timeout=10).json()["running"] == 1
    wait_until_idle(real_server, within_s=5)
    start = time.monotonic()
    response = real_server.post(COMPLETIONS, {"prompt": "Hello", "max_tokens": 2})
    assert response.status_code == 200
    assert time.monotonic() - start < 10


@pytest.mark.slow
def test_a_client_gone_while_waiting_for_a_whole_answer_frees_the_model(real_server):
    with pytest.raises(httpx.ReadTimeout):
        real_server.post(COMPLETIONS, COUNTING, timeout=2)  # the client gives up after 2 s
    wait_until_idle(real_server, within_s=5)


@pytest.mark.slow
def test_a_client_gone_while_its_long_prompt_is_read_frees_the_model(real_server):
    """~7,000 prompt tokens take ~20 s to read here; the worker stops after the running chunk."""
    long_prompt = {"prompt": "The quick brown fox jumps over the lazy dog. " * 700, "max_tokens": 1}
    with pytest.raises(httpx.ReadTimeout):
        real_server.post(COMPLETIONS, long_prompt, timeout=2)
    wait_until_idle(real_server, within_s=5)


@pytest.mark.slow
def test_a_full_queue_answers_429_and_the_server_serves_on(make_server, real_model_dir):
    srv = make_server(real_model_dir, "--queue", "0")  # one generation at a time, none waiting
    with httpx.stream("POST", srv.url + COMPLETIONS, json={**COUNTING, "stream": True},
                      timeout=REQUEST_TIMEOUT_S) as response:
        lines = response.iter_lines()
        assert next(lines).startswith("data: ")  # the model is busy for minutes
        refused = srv.post(CHAT, {"messages": USER, "max_tokens": 2})
        assert assert_openai_error(refused, 429)["type"] == "rate_limit_error"
    wait_until_idle(srv, within_s=5)
    assert_still_serves(srv)
