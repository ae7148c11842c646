"""`cluster=` values: what each means, and clear errors when Dask is missing or no scheduler
answers. The in-process path (cluster=None) never needs Dask."""

from __future__ import annotations

import socket
import sys
import threading

import pytest

from gemma_nb.cluster import ClusterError, connect
from gemma_nb.cluster import clients
from gemma_nb.errors import MissingDependencyError
from gemma_nb.eval import Item, MultipleChoiceTask, evaluate
from gemma_nb.eval.prompts import ClozePrompt

TASK = MultipleChoiceTask("cloze", (
    Item("The capital of France is", ("Paris", "Rome"), 0, "geo", "q0"),
    Item("Once upon a time there was a", ("cat", "time"), 0, "tale", "q1"),
), ClozePrompt())


@pytest.fixture
def without_dask(monkeypatch):
    """As if `distributed` were not installed: importing it raises ImportError."""
    monkeypatch.setitem(sys.modules, "distributed", None)


def test_a_cluster_without_dask_says_which_extra_to_install(without_dask, tiny_gemma2_model):
    with pytest.raises(MissingDependencyError, match=r"pip install 'gemma-nb\[cluster\]'"):
        evaluate(tiny_gemma2_model, TASK, cluster="local", progress=False)
    with pytest.raises(MissingDependencyError, match=r"gemma-nb\[cluster\]"):
        tiny_gemma2_model.map(["a", "b"], cluster="local", max_new_tokens=2, progress=False)


def test_in_process_evaluation_and_map_need_no_dask(without_dask, tiny_gemma2_model):
    report = evaluate(tiny_gemma2_model, TASK, progress=False)
    assert [r["id"] for r in report.records] == ["q0", "q1"] and not report.interrupted
    assert len(tiny_gemma2_model.map(["a", "b"], max_new_tokens=2, progress=False)) == 2


@pytest.mark.parametrize("value", [3.5, 2, ["local"]])
def test_a_value_that_names_no_cluster_lists_the_accepted_ones(value):
    with pytest.raises(ClusterError, match="cluster= takes None .*'local'.*address"):
        connect(value)


def test_an_address_of_an_unknown_scheme_is_refused():
    with pytest.raises(ClusterError, match="'carrier-pigeon://x' is not a Dask scheduler address"):
        connect("carrier-pigeon://x")


def test_an_address_where_no_scheduler_answers_says_so_and_leaves_no_thread(monkeypatch):
    monkeypatch.setattr(clients, "CONNECT_TIMEOUT_S", 1)
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    threads = set(threading.enumerate())
    with pytest.raises(ClusterError, match=f"no Dask scheduler answers at tcp://127.0.0.1:{port}"):
        connect(f"tcp://127.0.0.1:{port}")
    assert set(threading.enumerate()) == threads


@pytest.fixture(scope="module")
def scheduler():
    """A scheduler and one worker in this process, on TCP like a remote cluster."""
    import distributed

    with distributed.LocalCluster(processes=False, n_workers=1, threads_per_worker=1,
                                  protocol="tcp", host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        yield cluster
        for kept in clients._clients.values():  # before their scheduler goes
            kept.close()
        clients._clients.clear()


def test_a_client_is_used_as_it_is(scheduler):
    import distributed

    with distributed.Client(scheduler, set_as_default=False) as client:
        assert connect(client) is client


def test_an_address_is_dialled_once_and_its_client_kept(scheduler):
    client = connect(scheduler.scheduler_address)
    assert client.status == "running" and client.submit(len, "ab").result() == 2
    assert connect(scheduler.scheduler_address) is client


def test_a_cluster_object_gets_a_client_of_its_scheduler(scheduler):
    client = connect(scheduler)
    assert client.scheduler.address == scheduler.scheduler_address
    assert connect(scheduler) is client
