"""Evaluation and `Model.map` on a Dask cluster (`pip install 'gemma-nb[cluster]'`).

    report = ev.evaluate(model, task, cluster="local")      # worker processes on this machine
    answers = model.map(df.text, "Summarize: {item}", cluster="tcp://scheduler:8786")

Each worker loads the model once and keeps it: from the notebook's path when the worker sees
the same folder there, else from a copy uploaded once to each worker. Work goes out in chunks
and comes back in the original order; a chunk lost with its worker runs again elsewhere; Ctrl-C
cancels what is left. Why Dask and not Ray: docs/scale.md.
"""

from .clients import LOCAL, ClusterError, close_local_cluster, connect, local_client
from .jobs import completed
from .ref import ModelRef

__all__ = ["LOCAL", "ClusterError", "connect", "local_client", "close_local_cluster",
           "completed", "ModelRef"]
