"""A small tape for building ONNX graphs whose weights stream straight to an external data file.

`tape.op("Add", [a, b])` appends a node and returns its output name; `tape.weight(name, array)`
appends the array's bytes to the data file at once, so peak memory is one tensor, not the model.
"""

from __future__ import annotations

from typing import Any, BinaryIO

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnx.external_data_helper import ExternalDataInfo

__all__ = ["Tape", "data_index"]

# Page-aligned offsets let ONNX Runtime memory-map large initializers instead of copying them.
_ALIGNMENT = 4096


class Tape:
    def __init__(self, data_file: BinaryIO, data_location: str):
        self._data = data_file
        self._location = data_location
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[TensorProto] = []
        self._names: set[str] = set()

    def fresh(self, hint: str) -> str:
        name, n = hint, 0
        while name in self._names:
            n += 1
            name = f"{hint}_{n}"
        self._names.add(name)
        return name

    def op(self, op_type: str, inputs: list[str], *, outputs: int = 1, domain: str = "",
           name: str | None = None, output_names: list[str | None] | None = None,
           **attrs: Any) -> Any:
        """Append a node; returns its output name, or a list when `outputs` > 1.

        `output_names` fixes the names of outputs that are graph outputs (`present.0.key`); a
        None among them gets a fresh name, as every output does without them.
        """
        node_name = self.fresh(name or op_type)
        names = output_names or [None] * outputs
        outs = [self.fresh(f"{node_name}/out{i}") if n is None else n for i, n in enumerate(names)]
        outputs = len(outs)
        attrs = {k: v for k, v in attrs.items() if v is not None}
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=node_name,
                                           domain=domain or None, **attrs))
        return outs[0] if outputs == 1 else outs

    def weight(self, name: str, array: np.ndarray) -> str:
        """Write `array` to the external data file now and register it as an initializer."""
        name = self.fresh(name)
        array = np.ascontiguousarray(array)
        offset = self._data.tell()
        pad = -offset % _ALIGNMENT
        self._data.write(b"\0" * pad)
        offset += pad
        self._data.write(memoryview(array).cast("B"))  # no copy of a large tensor
        tensor = TensorProto(name=name, dims=array.shape,
                             data_type=helper.np_dtype_to_tensor_dtype(array.dtype))
        tensor.data_location = TensorProto.EXTERNAL
        for key, value in (("location", self._location), ("offset", str(offset)),
                           ("length", str(array.nbytes))):
            tensor.external_data.add(key=key, value=value)
        self.initializers.append(tensor)
        return name

    def alias(self, name: str, of: str, shape: tuple[int, ...]) -> str:
        """A second initializer over the same bytes of the data file, with another shape.

        Used for the tied embedding: GatherBlockQuantized wants [rows, bytes] where MatMulNBits
        wants [rows, blocks, bytes per block]; one copy on disk serves both.
        """
        source = next(t for t in self.initializers if t.name == of)
        tensor = TensorProto(name=self.fresh(name), dims=shape, data_type=source.data_type)
        tensor.data_location = TensorProto.EXTERNAL
        tensor.external_data.extend(source.external_data)
        self.initializers.append(tensor)
        return tensor.name

    def constant(self, name: str, array: np.ndarray | int | float | list) -> str:
        """A small initializer kept inside the .onnx file (shapes, scalars)."""
        name = self.fresh(name)
        self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name


def data_index(graph: onnx.GraphProto) -> dict[str, dict[str, Any]]:
    """Where each initializer kept in the external data file lies: gemma_nb.folder's
    DATA_INDEX_FILE, which lets the runtime read the weights without parsing the graph."""
    index = {}
    for tensor in graph.initializer:
        if tensor.data_location == TensorProto.EXTERNAL:
            where = ExternalDataInfo(tensor)
            index[tensor.name] = {"dtype": helper.tensor_dtype_to_np_dtype(tensor.data_type).name,
                                  "shape": list(tensor.dims), "offset": where.offset,
                                  "bytes": where.length}
    return index
