"""What a SavedModel's graph would do and hold, read from its protobuf without running anything.

A SavedModel is a program: its graph can hold any TensorFlow op, reading and writing files and calling back into
Python included, and constants that are no variable and so escape a variables-only memory count. Before a load the
server reads ``saved_model.pb`` and walks what a load or a prediction can run: the graph nodes the signatures and
the init op depend on, every function the object graph exposes (initializers and restore functions run at load),
and every function those call, through any ``func`` attribute. Everything else in the file (TensorFlow's own
checkpoint save/restore functions, for one) never runs here and is not judged.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

# Ops a served model has no business running: file system access, Python callbacks, file-backed readers and
# datasets, writers, remote execution, graphs carried as data. A deny-list can only name what it knows, so it is
# wide on purpose: whole families by name (`_DENIED_WORDS`: every tf.data dataset and iterator op, any reader,
# writer, saver...), the explicit names below, and any op with a file-like string attribute (`_FILE_ATTRS`).
DENIED_OPS = frozenset({
    "ReadFile", "WriteFile", "MatchingFiles", "ImmutableConst", "InitializeTableFromTextFile",
    "InitializeTableFromTextFileV2", "LoadAndRemapMatrix", "FileSystemSetConfiguration", "GenerateVocabRemapping",
    "MergeV2Checkpoints", "PyFunc", "PyFuncStateless", "EagerPyFunc", "RemoteCall", "Send", "Recv", "_Send",
    "_Recv", "ImportEvent", "RecordInput", "DecodeProtoV2", "EncodeProto", "RpcServer", "RpcClient", "RpcCall",
    "RpcServerStart", "RpcServerRegister", "RpcCheckStatus", "RpcGetValue",
})
_DENIED_WORDS = ("Dataset", "Iterator", "Reader", "Writer", "Summary", "Save", "Restore", "Snapshot", "Checkpoint",
                 "TFRecord", "Debug", "Collective", "Rpc", "DTensor", "Calibration", "TPU", "Sql", "LMDB")
_FILE_ATTRS = ("file", "path", "dir", "url", "filename", "prefix", "pattern")  # vocab_file, file_pattern, ...
# Constants under this size (shapes, axes, scalars) are part of the graph, whose file size admission counts anyway;
# counting them as slot tensors would only blur the exact variable figures.
SMALL_CONSTANT_BYTES = 1024
_CONSTANT_OPS = ("Const", "HostConst")


@dataclass(frozen=True)
class GraphReport:
    """What a SavedModel's reachable graph holds: ``constant_bytes`` of its ``Const`` tensors of 1 KiB or more, and
    the deny-listed ops (with where they sit), sorted."""

    constant_bytes: int
    denied: tuple[str, ...]


def inspect_saved_model(directory: Path) -> GraphReport:
    """Read ``saved_model.pb`` and report on everything a load or a prediction can run. Raises what protobuf
    raises for a file that is not a SavedModel (the caller turns it into ``ModelInvalid``)."""
    saved = saved_model_pb2.SavedModel.FromString((directory / "saved_model.pb").read_bytes())
    if not saved.meta_graphs:
        raise ValueError("its saved_model.pb holds no meta graph")
    meta = next((m for m in saved.meta_graphs if "serve" in m.meta_info_def.tags), saved.meta_graphs[0])
    graph = meta.graph_def
    library = {function.signature.name: function for function in graph.library.function}
    denied = set()
    if not meta.object_graph_def.nodes:
        # TensorFlow 1 layout: loading it runs its main/init ops and its saver's restore op, whatever they hold
        denied.add("a TensorFlow 1 init and restore graph (run at load)")
    nodes = _graph_nodes_needed(graph, meta)
    functions = _reachable_functions(nodes, set(meta.object_graph_def.concrete_functions), library)
    constant_bytes = 0
    for where, node_defs in [("graph", nodes), *((name, library[name].node_def) for name in sorted(functions))]:
        for node in node_defs:
            if node.op in _CONSTANT_OPS:
                size = _tensor_bytes(node.attr["value"].tensor)
                constant_bytes += size if size >= SMALL_CONSTANT_BYTES else 0
            elif _denied(node):
                denied.add(f"{node.op} (in {where})")
    return GraphReport(constant_bytes, tuple(sorted(denied)))


def _graph_nodes_needed(graph: Any, meta: Any) -> list[Any]:
    """The graph-level nodes the signatures' tensors and the init op depend on (inputs and control inputs)."""
    by_name = {node.name: node for node in graph.node}
    wanted = [tensor.name for sig in meta.signature_def.values()
              for tensor in (*sig.inputs.values(), *sig.outputs.values())]
    seen: dict[str, Any] = {}
    while wanted:
        name = wanted.pop().lstrip("^").split(":")[0]
        if name in seen or name not in by_name:
            continue
        seen[name] = node = by_name[name]
        wanted.extend(node.input)
    return list(seen.values())


def _reachable_functions(nodes: list[Any], roots: set[str], library: dict[str, Any]) -> set[str]:
    """Every library function the nodes or ``roots`` call, transitively (``func`` attrs, or an op that is one)."""
    reached: set[str] = set()
    pending = [*roots, *(called for node in nodes for called in _calls(node, library))]
    while pending:
        name = pending.pop()
        if name in reached or name not in library:
            continue
        reached.add(name)
        pending.extend(called for node in library[name].node_def for called in _calls(node, library))
    return reached


def _calls(node: Any, library: dict[str, Any]) -> list[str]:
    called = [node.op] if node.op in library else []
    for value in node.attr.values():
        if value.HasField("func"):
            called.append(value.func.name)
        elif value.HasField("list"):
            called.extend(f.name for f in value.list.func)
    return called


def _denied(node: Any) -> bool:
    op = node.op
    if op in DENIED_OPS or any(word in op for word in _DENIED_WORDS):
        return True
    if op == "PrintV2":  # prints to a log or stderr are harmless; "file://..." writes a file
        return node.attr["output_stream"].s.decode(errors="replace").startswith("file")
    # an op told where to find a file: FixedUnigramCandidateSampler's vocab_file, and whatever comes next
    return any(value.s and any(word in name.lower() for word in _FILE_ATTRS) for name, value in node.attr.items())


def _tensor_bytes(tensor: Any) -> int:
    """Bytes a ``Const`` tensor takes once materialised: its full shape, even if stored as one splat value."""
    count = 1
    for dim in tensor.tensor_shape.dim:
        count *= max(int(dim.size), 0)
    dtype = tf.dtypes.as_dtype(tensor.dtype)
    if dtype == tf.string:  # a short string_val repeats its last value over the whole shape
        values = [len(s) for s in tensor.string_val] or [len(tensor.tensor_content)]
        return sum(values) + max(count - len(values), 0) * values[-1]
    return count * dtype.size
