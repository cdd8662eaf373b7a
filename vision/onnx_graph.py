"""Look inside an exported ONNX graph for tensors that grow with the square of the tokens.

Two checks, for a token count ``L``:

* :func:`static_pairwise_shapes`: initializers, ``Constant`` values and the constant
  shape inputs of ``ConstantOfShape``, ``Expand``, ``Reshape`` and ``Tile`` (a dense mask
  baked in at export time, or one built at run time from a constant shape);
* :func:`runtime_pairwise_shapes`: every intermediate tensor of one onnxruntime run at a
  concrete image size (what a symbolic graph only shows when it runs).

A shape is *pairwise* when two of its dims are ``>= L``: an ``L x L`` attention mask or
score matrix. Pick ``L`` above every image side, so the image itself does not count.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

__all__ = ["intermediate_shapes", "is_pairwise", "runtime_pairwise_shapes", "static_pairwise_shapes"]

log = logging.getLogger(__name__)

#: Ops whose input ``index`` is a shape (a constant there fixes a tensor's size).
_SHAPE_INPUTS = {"ConstantOfShape": 0, "Expand": 1, "Reshape": 1, "Tile": 1}


def is_pairwise(shape: tuple[int, ...] | list[int], tokens: int) -> bool:
    """Whether two dims of ``shape`` are ``>= tokens`` (symbolic dims, given as -1 or 0, never are)."""
    return sum(1 for d in shape if isinstance(d, (int, np.integer)) and d >= tokens) >= 2


def _load(path: str | Path, weights: bool = False):
    """The model with its local functions inlined (the exporter may emit some); its
    weights are read only when ``weights`` (the static check needs their shapes alone)."""
    import onnx
    import onnx.inliner

    model = onnx.load(str(path), load_external_data=weights)
    return onnx.inliner.inline_local_functions(model) if model.functions else model


def _graphs(graph):
    """``graph`` and every subgraph (If / Loop / Scan bodies), depth first."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.g is not None and attr.g.node:
                yield from _graphs(attr.g)
            for sub in attr.graphs:
                yield from _graphs(sub)


def static_pairwise_shapes(path: str | Path, tokens: int) -> list[str]:
    """``"where: shape"`` for every constant tensor, or constant shape, of the graph at
    ``path`` with two dims ``>= tokens``. Empty when there is none."""
    from onnx import numpy_helper

    model = _load(path)
    found: list[str] = []
    for graph in _graphs(model.graph):
        constants = {init.name: init for init in graph.initializer}
        for init in graph.initializer:
            if is_pairwise(list(init.dims), tokens):
                found.append(f"initializer {init.name}: {list(init.dims)}")
        for node in graph.node:
            if node.op_type == "Constant":
                for attr in node.attribute:
                    if attr.name == "value":
                        constants[node.output[0]] = attr.t
                        if is_pairwise(list(attr.t.dims), tokens):
                            found.append(f"Constant {node.output[0]}: {list(attr.t.dims)}")
        for node in graph.node:
            index = _SHAPE_INPUTS.get(node.op_type)
            if index is None or len(node.input) <= index or node.input[index] not in constants:
                continue
            shape = numpy_helper.to_array(constants[node.input[index]]).reshape(-1).tolist()
            if is_pairwise(shape, tokens):
                found.append(f"{node.op_type} {node.name or node.output[0]}: shape {shape}")
    return found


def intermediate_shapes(path: str | Path, image: np.ndarray, chunk: int = 200) -> dict[str, tuple[int, ...]]:
    """Shape of every node output of the graph at ``path`` for one input ``image``
    ``(B, C, H, W)`` float32, from onnxruntime runs that expose ``chunk`` outputs at a time
    (so only that many intermediates are held at once)."""
    import onnx
    import onnxruntime as ort

    model = _load(path, weights=True)  # the graph runs here
    graph_outputs = [o.name for o in model.graph.output]
    names = list(dict.fromkeys(out for node in model.graph.node for out in node.output if out))
    names = [n for n in names if n not in graph_outputs]
    input_name = model.graph.input[0].name
    shapes: dict[str, tuple[int, ...]] = {}
    for start in range(0, len(names), chunk):
        part = names[start:start + chunk]
        del model.graph.output[:]
        model.graph.output.extend(onnx.ValueInfoProto(name=n) for n in part)
        ort_session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        for n, value in zip(part, ort_session.run(part, {input_name: image})):
            shapes[n] = tuple(np.shape(value))
    return shapes


def runtime_pairwise_shapes(path: str | Path, image: np.ndarray, tokens: int) -> list[str]:
    """``"name: shape"`` for every intermediate tensor with two dims ``>= tokens`` when the
    graph at ``path`` runs on ``image`` ``(B, C, H, W)``. Empty when there is none."""
    shapes = intermediate_shapes(path, image)
    log.info("checked %d intermediate tensors of %s", len(shapes), path)
    return [f"{n}: {list(s)}" for n, s in shapes.items() if is_pairwise(s, tokens)]
