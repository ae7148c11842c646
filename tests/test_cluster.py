"""On a local Dask cluster of 2 worker processes: the same results as in this process, one model
load per worker, a killed worker's items done elsewhere exactly once, Ctrl-C cancelling the
cluster's work, and a folder the workers cannot see uploaded to each of them."""

from __future__ import annotations

import _thread
import os
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import gemma_nb
from gemma_nb.cluster import ModelRef, close_local_cluster, completed, local_client
from gemma_nb.cluster.clients import WORKER_ENV
from gemma_nb.cluster.folder import share_folder
from gemma_nb.cluster.worker import loaded_models, sees_folder
from gemma_nb.eval import evaluate, mmlu
from gemma_nb.model import answer_texts

pytestmark = pytest.mark.slow

N_ITEMS, SEED = 32, 0
PROMPTS = [f"Write one word about the number {i}." for i in range(64)]
WAIT_S = 180  # for the cluster to reach a state; a hang fails the test instead of the run


ENV_BEFORE = dict(os.environ)


@pytest.fixture(scope="module")
def client():
    client = local_client(n_workers=2)
    yield client
    close_local_cluster()


@pytest.fixture(scope="module")
def in_process_mmlu(real_model):
    return evaluate(real_model, mmlu(n=N_ITEMS, seed=SEED), progress=False)


def without_timing(report) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in report.records]


def job_states(dask_scheduler, prefix: str) -> dict[str, str]:
    """The scheduler's tasks of a job (by key prefix) that it still holds, and their states.
    A chunk whose result was taken is released, so it is gone from here."""
    return {k: ts.state for k, ts in dask_scheduler.tasks.items() if str(k).startswith(prefix)}


def environment_variable(name: str) -> str | None:
    return os.environ.get(name)  # on the worker (os.environ.get itself would pickle ours)


def wait_mid_run(client, prefix: str, chunks: int) -> int:
    """Wait until at least two of a job's chunks are done and one is running; how many are
    done."""
    deadline = time.monotonic() + WAIT_S
    submitted = False  # the client submits chunk by chunk: count from when all are there
    while time.monotonic() < deadline:
        states = client.run_on_scheduler(job_states, prefix=prefix)
        submitted = submitted or len(states) == chunks
        if submitted and len(states) <= chunks - 2 and "processing" in states.values():
            return chunks - len(states)
        time.sleep(0.05)
    raise TimeoutError(f"the job {prefix}* never ran")


def test_an_mmlu_sample_on_two_workers_equals_the_in_process_run(client, real_model,
                                                                 in_process_mmlu):
    report = evaluate(real_model, mmlu(n=N_ITEMS, seed=SEED), cluster=client, progress=False)
    assert report.n == N_ITEMS and not report.interrupted
    assert without_timing(report) == without_timing(in_process_mmlu)


def test_map_over_64_prompts_on_two_workers_equals_the_in_process_run(client, real_model):
    for sampling in ({}, {"temperature": 0.8, "seed": 3}):  # greedy, then seeded sampling
        here = real_model.map(PROMPTS, max_new_tokens=10, progress=False, **sampling)
        there = real_model.map(PROMPTS, max_new_tokens=10, progress=False, cluster=client,
                               **sampling)
        assert there == here
        assert len(set(here)) > 8  # answers differ by prompt: order matters in the comparison
    series = pd.Series(PROMPTS[:10], index=range(100, 110), name="prompt")
    answers = real_model.map(series, max_new_tokens=4, progress=False, cluster=client)
    assert list(answers.index) == list(series.index) and answers.name == "prompt"


def test_the_workers_thread_settings_stay_out_of_this_process(client):
    for name, value in WORKER_ENV.items():
        assert os.environ.get(name) != value or ENV_BEFORE.get(name) == value
        assert set(client.run(environment_variable, name).values()) == {value}


def test_each_worker_loads_the_model_once_for_all_its_tasks(client, real_model):
    real_model.map(PROMPTS[:16], max_new_tokens=2, batch_size=2, progress=False, cluster=client)
    loads = client.run(loaded_models)
    assert len(loads) == 2
    for folders in loads.values():  # every worker ran tasks of several jobs by now
        assert folders == [str(Path(real_model.path).resolve())]


def test_a_worker_killed_mid_run_has_its_items_done_elsewhere_exactly_once(
        client, real_model, in_process_mmlu):
    chunks = N_ITEMS // 2  # batch_size=2: chunks of 2 items
    killed: dict[str, Any] = {}

    def kill_a_busy_worker() -> None:
        killed["done"] = wait_mid_run(client, "gemma-nb-records_for-", chunks)
        busy = [a for a, keys in client.processing().items()
                if any(str(k).startswith("gemma-nb-records_for-") for k in keys)]
        killed["address"] = busy[0]
        killed["pid"] = client.run(os.getpid, workers=busy[:1])[busy[0]]
        os.kill(killed["pid"], signal.SIGKILL)

    killer = threading.Thread(target=kill_a_busy_worker, daemon=True)
    killer.start()
    report = evaluate(real_model, mmlu(n=N_ITEMS, seed=SEED), batch_size=2, cluster=client,
                      progress=False)
    killer.join(WAIT_S)
    assert 2 <= killed["done"] < chunks  # the kill landed mid-run
    with pytest.raises(ProcessLookupError):
        os.kill(killed["pid"], 0)  # that worker process is gone
    assert killed["address"] not in client.scheduler_info()["workers"]
    ids = [r["id"] for r in report.records]
    assert len(ids) == len(set(ids)) == N_ITEMS and not report.interrupted
    assert without_timing(report) == without_timing(in_process_mmlu)
    client.wait_for_workers(2, timeout=WAIT_S)  # the nanny started a new one


def test_ctrl_c_cancels_the_cluster_work_and_keeps_what_was_done(client, real_model,
                                                                 python_ctrl_c):
    task = mmlu(n=64, seed=1)
    chunks = 32

    def interrupt_mid_run() -> None:
        wait_mid_run(client, "gemma-nb-records_for-", chunks)
        _thread.interrupt_main()  # what Kernel > Interrupt does: KeyboardInterrupt in the loop

    threading.Thread(target=interrupt_mid_run, daemon=True).start()
    report = evaluate(real_model, task, batch_size=2, cluster=client, progress=False)
    assert report.interrupted and 2 <= report.n < len(task)
    position = {item.id: i for i, item in enumerate(task.items)}
    done = [position[r["id"]] for r in report.records]
    assert done == sorted(set(done))  # each once, in the task's order
    deadline = time.monotonic() + WAIT_S
    while client.run_on_scheduler(job_states, prefix="gemma-nb-") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert client.run_on_scheduler(job_states, prefix="gemma-nb-") == {}  # nothing left running
    assert len(real_model.map(["Hi"], max_new_tokens=2, progress=False, cluster=client)) == 1


def test_a_folder_the_workers_cannot_see_is_uploaded_to_each_of_them(client, tiny_gemma2_model,
                                                                     tmp_path):
    copy = shutil.copytree(tiny_gemma2_model.path, tmp_path / "moved-model")
    model = gemma_nb.load(copy)
    sampling = {"max_new_tokens": 6}
    expected = answer_texts(model, sampling, PROMPTS[:4])
    ref = ModelRef.of(model)
    share_folder(client, ref, upload=True)
    shutil.rmtree(copy)  # from here on, no worker sees the notebook's path
    assert not any(client.run(sees_folder, ref).values())
    chunks = [(PROMPTS[:2],), (PROMPTS[2:4],)]
    answers = dict(completed(client, ref, answer_texts, sampling, chunks))
    assert answers[0] + answers[1] == expected
    own = client.run(lambda dask_worker: dask_worker.local_directory)
    for address, folders in client.run(loaded_models).items():
        uploaded = [f for f in folders if ref.upload_name in f]
        assert uploaded in ([], [str(Path(own[address]) / ref.upload_name)])
    assert any(ref.upload_name in f for fs in client.run(loaded_models).values() for f in fs)
