"""When a comparison fails, say where: the first intermediate tensors that cross the tolerance.

Intermediate tensors of the ONNX graph are marked as graph outputs, a chunk at a time (memory
stays bounded on big models), and compared in topological order with a reference:
- the failing runtime runs the same graph differently (CUDA, TensorRT, an FP16 graph): the
  reference is ONNX Runtime CPU on the FP32 graph, the test side is the suspect run;
- the graph itself disagrees with Paddle (an edited graph): the reference is Paddle's own
  intermediate values, which carry the names paddle2onnx derived from them
  (``p2o.<op>.<index per op type>.<result>``), or another ONNX graph given by path.
Names are only a hint once a simplifier has fused nodes: onnxsim keeps the first name of a
fused chain (``Conv`` + ``BatchNormalization`` emits ``p2o.pd_op.conv2d.0.0``, which in Paddle
is the value before batch norm). A name is therefore compared only where the tensors that
consume it produce the same names on both sides (through Cast/Identity); the nodes between the
last agreeing tensors and a failing one are reported as suspects.
"""

from __future__ import annotations

import glob
import os
import re
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from core.compare import Tolerance, compare_outputs, scaled_to, to_jsonable
from core.errors import UsageError
from core.layout import find_paddle_program

_TRANSPARENT = frozenset({"Identity", "Cast"})  # pass a value through unchanged (but dtype)
_PADDLE_PARAM = re.compile(r"^(?P<layer>[A-Za-z][\w]*?_\d+)\.(?:w|b)_\d+$")  # conv2d_3.w_0
_P2O = re.compile(r"^p2o\.(?P<op>[\w.]+?)\.(?P<index>\d+)\.\d+$")  # p2o.pd_op.conv2d.3.0


@dataclass(frozen=True)
class Node:
    name: str
    op_type: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


@dataclass(frozen=True)
class Graph:
    """Nodes in topological order; enough to match tensor names between two programs."""

    nodes: tuple[Node, ...]
    outputs: tuple[str, ...] = ()
    params: frozenset[str] = frozenset()  # weights (ONNX initializers, Paddle parameters)

    def producers(self) -> dict[str, Node]:
        return {out: node for node in self.nodes for out in node.outputs}

    def consumers(self) -> dict[str, list[Node]]:
        users: dict[str, list[Node]] = {}
        for node in self.nodes:
            for name in node.inputs:
                users.setdefault(name, []).append(node)
        return users


@dataclass(frozen=True)
class TensorSource:
    """A program that can compute any of its intermediate tensors on a fixed feed."""

    description: str
    graph: Graph
    fetch: Callable[[Sequence[str]], dict[str, np.ndarray]]
    fetchable: frozenset[str] | None = None  # None: every node output


@dataclass(frozen=True)
class LocalizedTensor:
    """An intermediate tensor whose error crosses the tolerance."""

    tensor: str
    node: str
    op_type: str
    paddle_layer: str | None
    max_abs_error: float
    tolerance: float  # the error allowed at the element that misses it by the most
    # The nodes that compute it from tensors that agreed (or inputs), in graph order:
    # "Conv.1 (Conv, Paddle conv2d_1)". With every tensor comparable, just its own node.
    suspects: tuple[str, ...] = ()

    def describe(self) -> str:
        layer = f", Paddle {self.paddle_layer}" if self.paddle_layer else ""
        text = (f"{self.tensor} (node {self.node}, {self.op_type}{layer}): max abs error "
                f"{self.max_abs_error:.2e} > allowed {self.tolerance:.2e}")
        if len(self.suspects) > 1:
            text += f"; suspects in order: {', '.join(self.suspects)}"
        return text


@dataclass(frozen=True)
class Localization:
    """The first failing tensors, and how much could be compared at all."""

    tensors: tuple[LocalizedTensor, ...]
    compared: int
    skipped: int  # not in the reference, renamed by fusion, or not floating point
    test: str
    reference: str
    notes: tuple[str, ...] = ()

    @property
    def found(self) -> bool:
        return bool(self.tensors)

    def summary(self) -> str:
        against = f"{self.test} vs {self.reference}, {self.compared} tensors compared"
        if not self.tensors:
            return f"no intermediate tensor crosses the tolerance ({against})"
        return f"first divergence at {self.tensors[0].describe()} ({against})"

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable({**asdict(self), "summary": self.summary()})


def localize(model_path: str | Path, feed: Mapping[str, np.ndarray], tolerance: Tolerance, *,
             reference_model_path: str | Path | None = None,
             paddle_program: str | Path | None = None,
             test_runner_factory: Callable[[Path], Any] | None = None,
             test_description: str | None = None,
             chunk_size: int = 64, limit: int = 3) -> Localization:
    """Where does ``model_path``, run by the suspect runtime, part from its reference?

    The test side is ``test_runner_factory(marked_model_path)`` (a runner with ``infer``;
    e.g. ``lambda p: create_runner("onnxruntime-cuda", p)``), or ONNX Runtime CPU when None.
    The reference is Paddle's program (``paddle_program``: the export's ``paddle/inference.json``),
    else ONNX Runtime CPU on ``reference_model_path``, else on ``model_path`` itself.
    Memory holds ``chunk_size`` intermediate tensors per side: on big models, feed the one
    failing sample (batch 1) and lower ``chunk_size``.
    """
    if test_runner_factory is None and reference_model_path is None and paddle_program is None:
        raise UsageError("localisation needs something to compare against: a reference "
                         "graph, the Paddle program, or a runner for the suspect runtime")
    if test_runner_factory is None:
        test = onnx_tensors(model_path, feed, description=test_description)
    else:
        test = runner_tensors(model_path, feed, test_runner_factory,
                              description=test_description or "suspect runtime")
    if paddle_program is not None:
        reference = paddle_tensors(paddle_program, feed)
    else:
        reference = onnx_tensors(reference_model_path or model_path, feed)
    return localize_sources(test, reference, tolerance, chunk_size=chunk_size, limit=limit)


def localize_sources(test: TensorSource, reference: TensorSource, tolerance: Tolerance, *,
                     chunk_size: int = 64, limit: int = 3) -> Localization:
    """Compare matching tensors chunk by chunk in topological order; stop after ``limit``."""
    if chunk_size < 1 or limit < 1:
        raise UsageError(f"chunk size and limit must be >= 1, got {chunk_size} and {limit}")
    rule = _tensor_rule(tolerance)
    candidates, skipped = _comparable(test, reference)
    producers = test.graph.producers()
    verdicts: dict[str, bool] = {}  # tensor -> agreed
    found: list[LocalizedTensor] = []
    notes: list[str] = []
    for start in range(0, len(candidates), chunk_size):
        chunk = candidates[start:start + chunk_size]
        test_values, ref_values = test.fetch(chunk), reference.fetch(chunk)
        for name in chunk:
            ref_value, test_value = ref_values.get(name), test_values.get(name)
            if ref_value is None or test_value is None or not (
                    _is_float(ref_value) and _is_float(test_value)):
                skipped += 1
                continue
            agreed, error, allowed, shape_note = _verdict(name, ref_value, test_value, rule)
            if shape_note:
                notes.append(shape_note)
            verdicts[name] = agreed
            if not verdicts[name] and len(found) < limit:
                node = producers[name]
                graphs = (test.graph, reference.graph)
                suspects = tuple(_describe_node(n, graphs)
                                 for n in _suspects(name, test.graph, producers, verdicts))
                found.append(LocalizedTensor(
                    tensor=name, node=node.name, op_type=node.op_type,
                    paddle_layer=_paddle_layer(name, node, graphs),
                    max_abs_error=error, tolerance=allowed, suspects=suspects))
        del test_values, ref_values
        if len(found) >= limit:
            break
    return Localization(tensors=tuple(found), compared=len(verdicts), skipped=skipped,
                        test=test.description, reference=reference.description,
                        notes=tuple(notes))


# ---- sources --------------------------------------------------------------------------------

def onnx_tensors(model_path: str | Path, feed: Mapping[str, np.ndarray], *,
                 kind: str | None = None, description: str | None = None) -> TensorSource:
    """``model_path`` run by runtimes' runner of ``kind`` (default: the graph as written, on
    ONNX Runtime CPU)."""
    import runtimes
    from runtimes.factory import runner_class

    kind = kind or runtimes.graph_runner()
    title = runner_class(kind).title
    return runner_tensors(model_path, feed, lambda path: runtimes.create_runner(kind, path),
                          description=description or f"{title} on {Path(model_path).name}")


def runner_tensors(model_path: str | Path, feed: Mapping[str, np.ndarray],
                   factory: Callable[[Path], Any], *, description: str) -> TensorSource:
    """Any runner (TensorRT, ONNX Runtime CUDA...) built by ``factory`` on the marked graph."""
    model = _load_onnx(model_path)
    feed = dict(feed)

    graph = _onnx_graph(model)  # before any marking: the graph's own outputs

    def fetch(names: Sequence[str]) -> dict[str, np.ndarray]:
        with _marked(model, model_path, names) as marked:
            runner = factory(marked)
            with runner:
                outputs = runner.infer(dict(feed))
        return {name: np.asarray(value) for name, value in outputs.items() if name in names}

    return TensorSource(description, graph, fetch)


def paddle_tensors(program: str | Path, feed: Mapping[str, np.ndarray], *,
                   description: str | None = None) -> TensorSource:
    """Paddle's static executor on a PIR inference program (``inference.json``).

    Values are named the way paddle2onnx names the tensors it makes from them, parameters by
    their parameter names and feeds by their input names.
    """
    found = find_paddle_program(program)
    if found.suffix != ".json":
        raise UsageError(f"{found} is a legacy Paddle program; localisation against Paddle "
                         "needs a PIR program (inference.json, what paddle.jit.save writes)")
    prefix = found.with_suffix("")
    graph, fetchable = _paddle_graph(prefix)
    feed = dict(feed)

    def fetch(names: Sequence[str]) -> dict[str, np.ndarray]:
        import paddle

        paddle.enable_static()
        try:
            executor = paddle.static.Executor(paddle.CPUPlace())
            prog, _, fetch_targets = paddle.static.load_inference_model(str(prefix), executor)
            values = _paddle_values(prog)
            wanted = [n for n in names if n in values and n in fetchable]
            with paddle.static.program_guard(prog):
                for column, name in enumerate(wanted, start=len(fetch_targets)):
                    # A fetch op keeps the value alive to the end of the run.
                    paddle._pir_ops.fetch(  # type: ignore[attr-defined]
                        values[name], f"crossrt_{column}", column)
            results = executor.run(prog, feed=feed, fetch_list=[])
        finally:
            paddle.disable_static()
        return dict(zip(wanted, (np.asarray(r) for r in results[len(fetch_targets):])))

    return TensorSource(description or "Paddle (static executor, CPU)", graph, fetch,
                        frozenset(fetchable))


# ---- matching -------------------------------------------------------------------------------

def _comparable(test: TensorSource, reference: TensorSource) -> tuple[list[str], int]:
    """Test-graph tensors that denote the same value in the reference, in topological order."""
    ref_producers = reference.graph.producers()
    shared = (set(test.graph.producers()) | set(test.graph.outputs)) & (
        set(ref_producers) | set(reference.graph.outputs))
    test_sig = _signatures(test.graph, shared)
    ref_sig = _signatures(reference.graph, shared)
    candidates, skipped = [], 0
    for node in test.graph.nodes:
        if node.op_type in ("Constant",) or not node.inputs:
            continue
        for name in node.outputs:
            if not name:
                continue
            fetchable = ((test.fetchable is None or name in test.fetchable) and
                         (reference.fetchable is None or name in reference.fetchable))
            if name in shared and fetchable and test_sig[name] == ref_sig[name] and (
                    test_sig[name] or name in test.graph.outputs):
                candidates.append(name)
            else:
                skipped += 1
    return candidates, skipped


def _signatures(graph: Graph, shared: set[str]) -> dict[str, frozenset[str]]:
    """For each tensor, the shared names its consumers produce (looking through Cast/Identity)."""
    users = graph.consumers()

    def produced_by_users(name: str, depth: int = 0) -> set[str]:
        names: set[str] = set()
        for node in users.get(name, ()):
            for out in node.outputs:
                if node.op_type in _TRANSPARENT and depth < 8:
                    names |= produced_by_users(out, depth + 1) | ({out} & shared)
                elif out in shared:
                    names.add(out)
        return names

    return {out: frozenset(produced_by_users(out)) for node in graph.nodes for out in node.outputs}


def _suspects(name: str, graph: Graph, producers: Mapping[str, Node],
              verdicts: Mapping[str, bool]) -> list[Node]:
    """Nodes that compute ``name`` from tensors already compared (or inputs), in graph order."""
    seen: set[str] = set()
    stack = [name]
    while stack:
        tensor = stack.pop()
        node = producers.get(tensor)
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        stack += [t for t in node.inputs if t not in verdicts and t not in graph.params]
    return [n for n in graph.nodes if n.name in seen and n.inputs]  # not Constant nodes


def _describe_node(node: Node, graphs: Sequence[Graph]) -> str:
    layer = _paddle_layer(node.outputs[0], node, graphs) if node.outputs else None
    return f"{node.name} ({node.op_type}{', Paddle ' + layer if layer else ''})"


def _paddle_layer(name: str, node: Node, graphs: Sequence[Graph]) -> str | None:
    """The Paddle layer behind a tensor: from its weights' names, else from the p2o name."""
    for graph in graphs:
        producer = graph.producers().get(name)
        for param in (producer.inputs if producer else ()):
            if match := _PADDLE_PARAM.match(param):
                return match["layer"]
    for param in node.inputs:
        if match := _PADDLE_PARAM.match(param):
            return match["layer"]
    if match := _P2O.match(name):
        return f"{match['op']} #{match['index']}"
    return None


# ---- numbers --------------------------------------------------------------------------------

def _is_float(value: np.ndarray) -> bool:
    return bool(np.issubdtype(np.asarray(value).dtype, np.floating))


def _tensor_rule(tolerance: Tolerance) -> Tolerance:
    """The tolerance applied to every intermediate tensor: element-wise, without a top-1 gate
    (a feature map is not logits), atol scaled per tensor by :func:`scaled_to`."""
    return replace(tolerance, check_error_stat="elemwise", min_top1_agreement=None)


def _verdict(name: str, ref: np.ndarray, test: np.ndarray,
             rule: Tolerance) -> tuple[bool, float, float, str | None]:
    """(agreed, max abs error, error allowed where the tolerance is missed by the most, a note
    when the shapes differ) by compare_outputs, the one comparison rule.

    Allowed per element: atol * max(1, max|ref|) + rtol * |ref|: intermediate tensors range
    over orders of magnitude, so the atol meant for logits is scaled by the tensor's size;
    NaN/Inf must sit where the reference has the same value (else the error is inf).
    """
    tolerance = scaled_to(rule, ref)
    out = compare_outputs({name: ref}, {name: test}, tolerance, statistics=False)[name]
    if out.max_abs is None:  # the shapes differ
        return False, float("inf"), 0.0, out.reason
    if out.nonfinite_mismatches:
        return False, float("inf"), 0.0, None
    magnitude = abs(float(ref[out.worst_index])) if ref.size and out.worst_index is not None \
        else 0.0
    return out.passed, out.max_abs, tolerance.atol + tolerance.rtol * magnitude, None


# ---- ONNX and Paddle plumbing --------------------------------------------------------------

def _load_onnx(model_path: str | Path) -> Any:
    """The graph without external weights: those stay in their files, read by ORT itself."""
    from core.graphs import read_onnx

    return read_onnx(model_path)


def _onnx_graph(model: Any) -> Graph:
    graph = model.graph
    nodes = [Node(n.name or f"{n.op_type}_{i}", n.op_type, tuple(n.input), tuple(n.output))
             for i, n in enumerate(graph.node)]
    known = {i.name for i in graph.input} | {t.name for t in graph.initializer}
    return Graph(tuple(_topological(nodes, known)), tuple(o.name for o in graph.output),
                 frozenset(t.name for t in graph.initializer))


def _topological(nodes: list[Node], known: set[str]) -> list[Node]:
    """Stable topological order (graphs edited by hand need not be sorted)."""
    ordered: list[Node] = []
    pending, available = list(nodes), set(known) | {""}
    while pending:
        ready = [n for n in pending if all(i in available for i in n.inputs)]
        if not ready:  # a cycle or a dangling input: keep the file's order for the rest
            return ordered + pending
        for node in ready:
            available.update(node.outputs)
        ordered += ready
        pending = [n for n in pending if n not in ready]
    return ordered


@contextmanager
def _marked(model: Any, model_path: str | Path, names: Sequence[str]) -> Iterator[Path]:
    """A file of the model with exactly ``names`` as its outputs (Polygraphy's ModifyOutputs).

    The outputs of ``model`` are replaced in place: it is the source's own copy of the graph,
    loaded once, and only its outputs change from chunk to chunk (copying the weights for
    every chunk would cost more than running it). A graph with external data is written
    beside the original (a hidden temporary file), so that its relative data paths still
    resolve and the weights are never copied.
    """
    import onnx
    from onnx.external_data_helper import uses_external_data
    from polygraphy.backend.onnx import ModifyOutputs

    # Polygraphy reads *, ? and [ as wildcards: a name is marked as itself.
    marked = ModifyOutputs(model, outputs=[glob.escape(n) for n in names])()
    source = Path(model_path)
    if any(uses_external_data(t) for t in marked.graph.initializer):
        handle, name = tempfile.mkstemp(dir=source.parent, prefix=f".{source.stem}.localize-",
                                        suffix=".onnx")
        os.close(handle)
        try:
            onnx.save(marked, name)  # the external references stay as they are
            yield Path(name)
        finally:
            Path(name).unlink(missing_ok=True)
        return
    with tempfile.TemporaryDirectory(prefix="crossrt-localize-") as folder:
        path = Path(folder) / source.name
        onnx.save(marked, str(path))
        yield path


def _paddle_values(program: Any) -> dict[str, Any]:
    """Every value of a PIR program by the name paddle2onnx gives its tensor."""
    counters: Counter[str] = Counter()
    values = {}
    for op in program.global_block().ops:
        kind = op.name()
        index = counters[kind]
        counters[kind] += 1
        for k in range(op.num_results()):
            values[_paddle_name(op, kind, index, k)] = op.result(k)
    return values


def _paddle_name(op: Any, kind: str, index: int, result: int) -> str:
    if kind == "builtin.parameter":
        return op.attrs()["parameter_name"]
    if kind == "pd_op.data":
        return op.attrs()["name"]
    return f"p2o.{kind}.{index}.{result}"


def _value_id(value: Any) -> str | None:
    try:
        return value.id
    except ValueError:  # an optional operand left empty
        return None


def _paddle_graph(prefix: Path) -> tuple[Graph, set[str]]:
    """The program's ops as a Graph, and the values whose final content is theirs alone."""
    import paddle

    paddle.enable_static()
    try:
        executor = paddle.static.Executor(paddle.CPUPlace())
        program, _, _ = paddle.static.load_inference_model(str(prefix), executor)
        counters: Counter[str] = Counter()
        names: dict[str, str] = {}  # value id -> name
        nodes: list[Node] = []
        params: set[str] = set()
        overwritten: set[str] = set()
        for op in program.global_block().ops:
            kind = op.name()
            index = counters[kind]
            counters[kind] += 1
            outputs = tuple(_paddle_name(op, kind, index, k) for k in range(op.num_results()))
            for k, out in enumerate(outputs):
                names[op.result(k).id] = out
            inputs = tuple(names.get(_value_id(v) or "", "") for v in op.operands_source())
            if kind == "builtin.parameter":
                params.update(outputs)
            # An in-place op overwrites its operands' buffers: their values cannot be fetched
            # at the end of the run. batch_norm_ only updates its running statistics.
            if kind.endswith("_") and kind != "pd_op.batch_norm_":
                overwritten.update(inputs)
            nodes.append(Node(f"{kind}#{index}", kind, inputs, outputs))
    finally:
        paddle.disable_static()
    fetchable = {out for node in nodes for out in node.outputs
                 if out.startswith("p2o.") and out not in overwritten}
    return Graph(tuple(nodes), params=frozenset(params)), fetchable
