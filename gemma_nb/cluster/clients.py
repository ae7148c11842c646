"""From a `cluster=` argument to a Dask `distributed.Client`.

    None                        -> no client: the caller runs in this process
    "local"                     -> this kernel's LocalCluster, started on first use and reused
    "tcp://10.0.0.5:8786"       -> an existing cluster's scheduler
    distributed.Client(...)     -> used as it is
    a Dask cluster object       -> a client of it (LocalCluster, dask-jobqueue, dask-kubernetes...)
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType
from typing import Any

from ..errors import GemmaError, MissingDependencyError
from ..session import physical_cores

__all__ = ["ClusterError", "LOCAL", "connect", "distributed_module", "local_client",
           "close_local_cluster"]

LOCAL = "local"
CONNECT_TIMEOUT_S = 10  # a scheduler that does not answer within this is reported, not waited on
WORKER_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


class ClusterError(GemmaError):
    """A `cluster=` value that names no cluster, or a scheduler that does not answer."""


def distributed_module() -> ModuleType:
    """`import distributed`, or a one-line error saying which extra brings it."""
    try:
        import distributed
    except ImportError:
        raise MissingDependencyError(
            "running on a cluster needs Dask's distributed package: "
            "pip install 'gemma-nb[cluster]' (or pass cluster=None to run in this process)"
        ) from None
    return distributed


_local: dict[str, Any] = {}  # "cluster" and "client" of this kernel's LocalCluster
_guard = threading.Lock()  # one cluster or client made at a time


def local_client(n_workers: int | None = None) -> Any:
    """A client of this kernel's local cluster: `n_workers` worker processes (default: one per
    physical core) of one thread each. Started on first use and kept, so the workers' loaded
    models serve every later call; asking for another worker count starts a new one."""
    distributed = distributed_module()
    import dask.config  # installed with distributed

    n_workers = n_workers or physical_cores()
    with _guard:
        client = _local.get("client")
        if client is not None and client.status == "running" and _local["n_workers"] == n_workers:
            return client
        close_local_cluster()
        # One thread per worker: a worker runs one chunk at a time, with ONNX Runtime on one core.
        # Dask's nannies would set the workers' thread variables in this process's own
        # os.environ (its "pre-spawn-environ"), leaving the kernel and everything it starts
        # later on one BLAS/OpenMP thread; they go to the workers alone instead.
        with dask.config.set({"distributed.nanny.pre-spawn-environ": {}}):
            cluster = distributed.LocalCluster(n_workers=n_workers, threads_per_worker=1,
                                               processes=True, dashboard_address=_dashboard(),
                                               env=WORKER_ENV)
        _local.update(cluster=cluster, client=distributed.Client(cluster),
                      n_workers=n_workers)
        return _local["client"]


def close_local_cluster() -> None:
    """Stop this kernel's local cluster, if one was started (its workers free their models)."""
    client, cluster = _local.pop("client", None), _local.pop("cluster", None)
    if client is not None:
        client.close()
    if cluster is not None:
        cluster.close()


def _dashboard() -> str | None:
    """Dask's dashboard needs bokeh: on any free port when it is installed, else none (and no
    warning about it)."""
    try:
        import bokeh  # noqa: F401
    except ImportError:
        return None
    return ":0"


def connect(cluster: Any) -> Any:
    """The `distributed.Client` that `cluster` names (see the module docstring). A client made
    here is kept and reused for the same scheduler, as a notebook keeps one Client open."""
    distributed = distributed_module()
    if isinstance(cluster, distributed.Client):
        return cluster
    if cluster == LOCAL:
        return local_client()
    if isinstance(cluster, str):
        return _kept(cluster, lambda: _dial(distributed, cluster))
    if isinstance(cluster, distributed.deploy.Cluster):
        return _kept(cluster.scheduler_address, lambda: distributed.Client(cluster))
    raise ClusterError(
        f"cluster= takes None (this process), {LOCAL!r} (worker processes on this machine), a "
        f"scheduler address such as 'tcp://host:8786', a distributed.Client or a Dask cluster; "
        f"got {cluster!r}"
    )


_clients: dict[str, Any] = {}  # by scheduler address


def _kept(address: str, make: Callable[[], Any]) -> Any:
    with _guard:
        client = _clients.get(address)
        if client is None or client.status != "running":
            client = _clients[address] = make()
        return client


def _dial(distributed: ModuleType, address: str) -> Any:
    try:
        _handshake(distributed, address)
        return distributed.Client(address, timeout=CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError) as exc:
        raise ClusterError(f"no Dask scheduler answers at {address}: {exc}") from None
    except ValueError as exc:  # Dask's own words on the address's form
        raise ClusterError(f"{address!r} is not a Dask scheduler address: {exc}") from None


def _handshake(distributed: ModuleType, address: str) -> None:
    """Connect to `address` once on a throwaway event loop. A Client that cannot connect leaves
    its own event-loop thread running, one per failed try, so none is made before this works."""
    async def hello() -> None:
        comm = await distributed.comm.connect(address, timeout=CONNECT_TIMEOUT_S)
        await comm.close()

    # A kernel's main thread already runs an event loop, where asyncio.run is refused.
    with ThreadPoolExecutor(max_workers=1) as thread:
        thread.submit(asyncio.run, hello()).result()
