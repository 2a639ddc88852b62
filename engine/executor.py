"""Runs one validated prompt: dependency order, cache reuse, lazy inputs, list mapping, events per node."""
from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
import threading
import traceback

from . import context, nodespec
from .cache import NodeOutput, OutputCache, compute_signatures
from .events import PREVIEW_IMAGE, TEXT, EventSink, exception_type_name, progress_text, timestamp_ms
from .graph import DependencyCycleError, DynamicPrompt, ExecutionBlocker, GraphBuilder, link_target
from .types import ExecutionResult, QueueItem

log = logging.getLogger("comfyd.executor")


class NodeError(Exception):
    """A node failed; carries what `execution_error` reports."""

    def __init__(self, node_id: str, cause: BaseException, inputs: dict):
        super().__init__(str(cause))
        self.node_id = node_id
        self.cause = cause
        self.inputs = inputs


class Executor:
    def __init__(self, registry, sink: EventSink, *, preview_method: str = "none", models=None,
                 cache: OutputCache | None = None):
        self.registry = registry
        self.sink = sink
        self.preview_method = preview_method
        self.models = models  # a callable returning the ModelManager (created on first use: it imports torch)
        self.cache = cache if cache is not None else OutputCache()  # (an empty cache is falsy)
        self._instances: dict[tuple[str, str], object] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def run(self, item: QueueItem, interrupt: threading.Event) -> ExecutionResult:
        return _PromptRun(self, item, interrupt).execute()

    def reset(self) -> None:
        """Drop cached outputs and node instances (models they hold become collectable)."""
        self.cache.clear()
        self._instances.clear()

    def instance(self, node_id: str, class_type: str):
        key = (node_id, class_type)
        if key not in self._instances:
            self._instances[key] = self.registry.get(class_type)()
        return self._instances[key]

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """This worker's own event loop, for async node functions and hooks."""
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        return self._loop

    def resolve(self, value):
        """Await a coroutine returned by an async hook (check_lazy_status) on the worker's loop."""
        return self.loop.run_until_complete(value) if inspect.isawaitable(value) else value


@dataclasses.dataclass
class _Running:
    """An async node whose calls are still going: per call, its return or the task computing it."""
    returns: list
    inputs: dict  # for the error report


class _PromptRun:
    def __init__(self, executor: Executor, item: QueueItem, interrupt: threading.Event):
        self.ex = executor
        self.item = item
        self.prompt_id = item.prompt_id
        self.sid = item.client_id
        self.interrupt = interrupt
        self.messages: list[tuple[str, dict]] = []
        self.outputs: dict[str, dict] = {}
        self.meta: dict[str, dict] = {}
        self.done: dict[str, NodeOutput] = {}
        self.executed: list[str] = []
        self.progress_nodes: dict[str, dict] = {}
        self.graph = DynamicPrompt(item.prompt)  # expansion adds nodes to this run's graph only
        self._specs: dict[str, tuple[dict, dict]] = {}
        self.expansions: dict[str, list[tuple[dict | None, tuple]]] = {}
        self.stack: list[str] = []  # nodes still to finish, the next ones on top
        self.signatures: dict[str, str] = {}
        self.running: dict[str, _Running] = {}
        self._lazy_asked: dict[str, tuple[int, list[str]]] = {}

    # -- events --------------------------------------------------------------------------------------------

    def emit(self, event: str, data: dict, *, record: bool = False) -> None:
        if record:
            self.messages.append((event, data))
        self.ex.sink.send(event, data, self.sid)

    def set_progress(self, node_id: str, value: float, total: float, state: str = "running") -> None:
        self.progress_nodes[node_id] = {
            "value": value, "max": total, "state": state, "node_id": node_id, "prompt_id": self.prompt_id,
            "display_node_id": self.display_id(node_id), "parent_node_id": self.graph.get_parent_node_id(node_id),
            "real_node_id": self.graph.get_real_node_id(node_id),
        }
        self.emit("progress_state", {"prompt_id": self.prompt_id, "nodes": dict(self.progress_nodes)})

    def on_progress(self, node_id: str, value: float, total: float) -> None:
        self.set_progress(node_id, value, total)
        self.emit("progress", {"value": value, "max": total, "prompt_id": self.prompt_id, "node": node_id})

    def on_preview(self, payload: bytes, droppable: bool) -> None:
        # Latent previews (droppable) name their node; SaveImageWebsocket-style images go as plain frames.
        metadata = None
        if droppable and self.current is not None:
            node_id = self.current
            metadata = {"node_id": node_id, "display_node_id": self.display_id(node_id),
                        "parent_node_id": self.graph.get_parent_node_id(node_id),
                        "real_node_id": self.graph.get_real_node_id(node_id),
                        "prompt_id": self.prompt_id}
        self.ex.sink.send_bytes(PREVIEW_IMAGE, payload, self.sid, droppable=droppable, metadata=metadata)

    def on_text(self, node_id: str, text: str) -> None:
        # to every client, as ComfyUI's send_progress_text without a sid
        self.ex.sink.send_bytes(TEXT, progress_text(node_id, text), None, droppable=False)

    # -- the run -------------------------------------------------------------------------------------------

    def execute(self) -> ExecutionResult:
        self.emit("execution_start", {"prompt_id": self.prompt_id, "timestamp": timestamp_ms()}, record=True)
        order = self.dependency_order(self.item.outputs_to_execute)
        signatures = compute_signatures(self.item.prompt, order, self.ex.registry)
        needed = set(order)
        cached = [n for n in self.item.prompt if n in needed and self.ex.cache.get(signatures[n]) is not None]
        self.emit("execution_cached", {"nodes": cached, "prompt_id": self.prompt_id, "timestamp": timestamp_ms()},
                  record=True)
        try:
            self.signatures = signatures
            self.run_nodes(self.item.outputs_to_execute)
        except context.Interrupted:
            node_id = self.graph.get_real_node_id(self.current) if self.current is not None else None
            self.emit("execution_interrupted", {
                "prompt_id": self.prompt_id, "node_id": node_id, "node_type": self.class_type(node_id),
                "executed": list(self.executed), "timestamp": timestamp_ms()}, record=True)
            return self.result("error", False)
        except NodeError as err:
            log.error("Error running node %s (%s): %s\n%s", err.node_id, self.class_type(err.node_id), err.cause,
                      "".join(traceback.format_exception(err.cause)).rstrip())
            self.emit("execution_error", self.error_report(err), record=True)
            return self.result("error", False)
        finally:
            self.cancel_running()
            self.ex.cache.retain(set(signatures.values()))
        self.emit("execution_success", {"prompt_id": self.prompt_id, "timestamp": timestamp_ms()}, record=True)
        return self.result("success", True)

    def result(self, status: str, completed: bool) -> ExecutionResult:
        return ExecutionResult(status, completed, self.messages, self.outputs, self.meta)

    def class_type(self, node_id: str | None) -> str | None:
        return self.graph.get_node(node_id)["class_type"] if self.graph.has_node(node_id) else None

    def inputs(self, node_id: str) -> dict:
        return self.graph.get_node(node_id).get("inputs", {})

    def specs(self, node_id: str) -> dict[str, nodespec.InputSpec]:
        return self._declaration(node_id)[1]

    def accepts(self, node_id: str, name: str) -> bool:
        """Whether the node declares an input `name`, asking its INPUT_TYPES dicts themselves: packs declare
        open-ended optional inputs with dicts that contain every name (rgthree's Power Lora Loader)."""
        types = self._declaration(node_id)[0]
        return any(isinstance(types.get(c), dict) and name in types[c] for c in ("required", "optional", "hidden"))

    def _declaration(self, node_id: str) -> tuple[dict, dict[str, nodespec.InputSpec]]:
        class_type = self.class_type(node_id)
        if class_type not in self._specs:
            types = nodespec.input_types(self.ex.registry.get(class_type))
            self._specs[class_type] = (types, nodespec.input_specs(self.ex.registry.get(class_type), types))
        return self._specs[class_type]

    def dependency_order(self, roots: list[str]) -> list[str]:
        """Every node the roots need, each after the nodes it links to (iterative post-order)."""
        order, seen = [], set()
        for root in roots:
            if root in seen:
                continue
            seen.add(root)
            stack = [(root, iter(self.links(root)))]
            while stack:
                node_id, parents = stack[-1]
                parent = next(parents, None)
                if parent is None:
                    stack.pop()
                    order.append(node_id)
                elif parent not in seen:
                    seen.add(parent)
                    stack.append((parent, iter(self.links(parent))))
        return order

    def links(self, node_id: str, only=None) -> list[str]:
        parents = []
        for name, value in self.inputs(node_id).items():
            target = link_target(value)
            if target is not None and self.graph.has_node(target[0]) and (only is None or name in only):
                parents.append(target[0])
        return parents

    def run_nodes(self, roots: list[str]) -> None:
        """Depth-first from the output nodes: a node runs once what it waits for is done. An async node runs as a
        task on the worker's loop while other nodes go on; the run waits for such tasks only when nothing else
        can run (as in ComfyUI, where async nodes overlap)."""
        self.current = None
        self.stack = list(dict.fromkeys(reversed(roots)))
        while self.stack:
            if self.interrupt.is_set():
                raise context.Interrupted()
            self.settle_running()
            node_id = self.next_ready()
            if node_id is None:
                if not self.running:  # all that is left waits on itself: an expansion linked a cycle
                    raise NodeError(self.display_id(self.stack[-1]),
                                    DependencyCycleError("Dependency cycle detected"), {})
                self.wait_running()
                continue
            self.current = node_id
            signature = self.signatures.get(node_id)  # nodes added by expansion have none: never cached
            cached = self.ex.cache.get(signature) if signature else None
            if cached is not None:
                self.stack.remove(node_id)
                self.finish(node_id, cached, replay=True)
            elif node_id in self.expansions:
                self.complete(node_id, self.resolve_expansion(node_id))
            else:
                self.call_node(node_id)

    def next_ready(self) -> str | None:
        """The topmost node on the stack that can run now. The nodes it waits for go on top first, unless they
        are running or on the stack already (then it waits and a node further down may go)."""
        index = len(self.stack) - 1
        while index >= 0:
            node_id = self.stack[index]
            signature = self.signatures.get(node_id)
            if node_id in self.running:
                index -= 1
                continue
            if signature and self.ex.cache.get(signature) is not None:
                return node_id
            waiting = self.waiting_for(node_id)
            if not waiting:
                return node_id
            queued = set(self.stack) | set(self.running)
            new = [parent for parent in waiting if parent not in queued]
            if new:
                self.stack.extend(reversed(new))
                index = len(self.stack) - 1
            else:
                index -= 1
        return None

    def waiting_for(self, node_id: str) -> list[str]:
        if node_id in self.expansions:
            return [n for n in self.expansion_targets(node_id) if n not in self.done]
        waiting = self.unresolved(node_id, self.eager_inputs(node_id))
        if waiting:
            return waiting
        asked = self._lazy_asked.get(node_id)
        if asked is None or asked[0] != len(self.done):  # ask again only once something new is done
            asked = self._lazy_asked[node_id] = (len(self.done), self.requested_lazy_inputs(node_id))
        return self.unresolved(node_id, asked[1])

    def complete(self, node_id: str, output: NodeOutput | None) -> None:
        if output is None:  # the node expanded into a subgraph: it resolves once that has run
            return
        self.stack.remove(node_id)
        signature = self.signatures.get(node_id)
        if signature:
            self.ex.cache.put(signature, output)
        self.finish(node_id, output, replay=False)

    # -- async nodes -----------------------------------------------------------------------------------------

    def start(self, value):
        """A call's return; a coroutine becomes a task on the worker's loop, given a first turn right away (its
        result is used at once if that finishes it)."""
        if not inspect.isawaitable(value):
            return value
        task = asyncio.ensure_future(value, loop=self.ex.loop)
        self.ex.loop.run_until_complete(asyncio.sleep(0))
        return task.result() if task.done() else task

    def settle_running(self) -> None:
        """Give running async nodes a turn; complete those whose calls have all returned."""
        if not self.running:
            return
        self.ex.loop.run_until_complete(asyncio.sleep(0))
        for node_id, run in list(self.running.items()):
            if any(isinstance(r, asyncio.Future) and not r.done() for r in run.returns):
                continue
            del self.running[node_id]
            try:
                returns = [r.result() if isinstance(r, asyncio.Future) else r for r in run.returns]
                output = self.outcome(node_id, returns)
            except context.Interrupted:
                raise
            except Exception as ex:
                raise NodeError(node_id, ex, run.inputs) from ex
            self.complete(node_id, output)

    def wait_running(self) -> None:
        """Run the loop until a running task finishes (or briefly, to look at the interrupt flag again)."""
        tasks = [r for run in self.running.values() for r in run.returns
                 if isinstance(r, asyncio.Future) and not r.done()]
        if tasks:
            self.ex.loop.run_until_complete(asyncio.wait(tasks, timeout=0.1, return_when=asyncio.FIRST_COMPLETED))

    def cancel_running(self) -> None:
        tasks = [r for run in self.running.values() for r in run.returns if isinstance(r, asyncio.Future)]
        self.running.clear()
        for task in tasks:
            task.cancel()
        if tasks:
            self.ex.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))

    # -- node expansion: a node may return {"expand": graph, "result": (value | [node, slot], ...)} ----------

    def expand(self, node_id: str, calls: list[tuple[dict | None, tuple]]) -> None:
        """Add the subgraphs a node returned to this run; their ids must be new (GraphBuilder makes them so)."""
        for graph, _ in calls:
            for new_id, node in (graph or {}).items():
                new_id = str(new_id)
                if self.graph.has_node(new_id):
                    raise ValueError(f"node expansion added node {new_id}, which already exists; "
                                     "expanded node ids must be unique (use a graph builder)")
                if not isinstance(node, dict) or node.get("class_type") not in self.ex.registry:
                    raise ValueError(f"node expansion added node {new_id} of unknown type")
                self.graph.add_ephemeral_node(
                    new_id, {"class_type": node["class_type"], "inputs": dict(node.get("inputs", {}))}, node_id,
                    str(node.get("override_display_id", node_id)))
        self.expansions[node_id] = calls

    def expansion_targets(self, node_id: str) -> list[str]:
        """Nodes an expanded node waits for: what its results link to, and the subgraph's output nodes."""
        targets = []
        for graph, result in self.expansions[node_id]:
            targets += [t[0] for t in map(link_target, result) if t is not None]
            targets += [str(n) for n, node in (graph or {}).items()
                        if nodespec.is_output_node(self.ex.registry.get(node["class_type"]))]
        return list(dict.fromkeys(targets))

    def resolve_expansion(self, node_id: str) -> NodeOutput:
        calls = self.expansions.pop(node_id)
        cls = self.ex.registry.get(self.class_type(node_id))
        flags = nodespec.output_is_list(cls)
        values: list[list] = [[] for _ in flags]
        for _, result in calls:
            for slot, value in enumerate(result):
                target = link_target(value)
                if target is not None:
                    values[slot].extend(self.done[target[0]].values[target[1]])
                else:
                    _add_output(values[slot], value, flags[slot])
        return NodeOutput(values, None)

    def display_id(self, node_id: str) -> str:
        return self.graph.get_display_node_id(node_id)

    def unresolved(self, node_id: str, names) -> list[str]:
        return [p for p in dict.fromkeys(self.links(node_id, only=set(names))) if p not in self.done]

    def eager_inputs(self, node_id: str) -> list[str]:
        specs = self.specs(node_id)
        return [name for name in self.inputs(node_id)
                if not (name in specs and specs[name].lazy)]

    def requested_lazy_inputs(self, node_id: str) -> list[str]:
        """Lazy inputs the node asks for now, through its `check_lazy_status` hook."""
        cls = self.ex.registry.get(self.class_type(node_id))
        inputs = self.inputs(node_id)
        lazy = [n for n, s in self.specs(node_id).items() if s.lazy and link_target(inputs.get(n))]
        unevaluated = [n for n in lazy if link_target(inputs[n])[0] not in self.done]
        if not unevaluated or not hasattr(cls, "check_lazy_status"):
            return []
        hook = getattr(self.ex.instance(node_id, self.class_type(node_id)), "check_lazy_status")
        requested: list[str] = []
        for kwargs in self.mapped_calls(cls, self.gather_inputs(node_id, cls)):
            if _blocker_in(kwargs) is not None:
                continue
            names = self.ex.resolve(hook(**kwargs)) or []
            requested.extend(n for n in names if n in unevaluated and n not in requested)
        return requested

    def gather_inputs(self, node_id: str, cls) -> dict[str, list]:
        """Each input as a list of values: linked outputs as produced, constants as one-element lists."""
        specs = self.specs(node_id)
        data: dict[str, list] = {}
        for name, value in self.inputs(node_id).items():
            spec = specs.get(name)
            target = link_target(value)
            if target is not None and not (spec is not None and spec.options.get("rawLink")):
                # linked inputs reach the node even when undeclared (variadic nodes take them as **kwargs)
                source = self.done.get(target[0])
                values = source.values if source is not None else ()
                data[name] = values[target[1]] if target[1] < len(values) else [None]  # None: not evaluated (yet)
            elif spec is not None or self.accepts(node_id, name):  # hidden ones too: known hidden types are set below
                data[name] = [value]
        extra = self.item.extra_data
        hidden_values = {
            "PROMPT": self.item.prompt, "EXTRA_PNGINFO": extra.get("extra_pnginfo"), "UNIQUE_ID": node_id,
            "AUTH_TOKEN_COMFY_ORG": extra.get("auth_token_comfy_org"),
            "API_KEY_COMFY_ORG": extra.get("api_key_comfy_org"), "DYNPROMPT": self.graph,
        }
        for name, spec in specs.items():
            if spec.category == "hidden" and isinstance(spec.type, str) and spec.type in hidden_values:
                data[name] = [hidden_values[spec.type]]
        return data

    @staticmethod
    def mapped_calls(cls, data: dict[str, list]):
        """The keyword arguments of each call: lists map element-wise unless the node takes whole lists."""
        if getattr(cls, "INPUT_IS_LIST", False):
            yield dict(data)
            return
        count = max((len(v) for v in data.values()), default=1)
        if any(len(v) == 0 for v in data.values()):
            count = 0
        for i in range(count):
            yield {name: values[min(i, len(values) - 1)] for name, values in data.items()}

    def preview_method(self) -> str:
        """The client's choice for this prompt (the frontend's "Live preview method" setting, sent as
        extra_data.preview_method), else the server's --preview-method."""
        chosen = self.item.extra_data.get("preview_method")
        return chosen if chosen in context.PREVIEW_METHODS else self.ex.preview_method

    def call_node(self, node_id: str) -> None:
        """Run the node's function once per mapped call; it completes now, or later if a call is async."""
        class_type = self.class_type(node_id)
        cls = self.ex.registry.get(class_type)
        data = self.gather_inputs(node_id, cls)
        self.set_progress(node_id, 0.0, 1.0)
        self.emit("executing", {"node": node_id, "display_node": self.display_id(node_id), "prompt_id": self.prompt_id})
        ctx = context.NodeContext(self.prompt_id, node_id, self.display_id(node_id), self.interrupt, self.on_progress,
                                  self.on_preview, self.preview_method(), self.ex.models, self.on_text)
        token = context.activate(ctx)
        try:
            function = getattr(self.ex.instance(node_id, class_type), cls.FUNCTION)
            returns = []
            for index, kwargs in enumerate(self.mapped_calls(cls, data)):
                ctx.check_interrupted()
                blocker = _blocker_in(kwargs)
                if blocker is not None:  # the call is skipped: its outputs carry the block on
                    returns.append(self.blocked(node_id, blocker))
                    continue
                GraphBuilder.set_default_prefix(node_id, index)
                returns.append(self.start(function(**kwargs)))
            if any(isinstance(r, asyncio.Future) for r in returns):
                self.running[node_id] = _Running(returns, data)
                return
            output = self.outcome(node_id, returns)
        except context.Interrupted:
            raise
        except Exception as ex:
            raise NodeError(node_id, ex, data) from ex
        finally:
            context.deactivate(token)
        self.complete(node_id, output)

    def outcome(self, node_id: str, returns: list) -> NodeOutput | None:
        """The node's output from its calls' returns, or None when it expanded (the subgraph is added)."""
        if any(isinstance(r, dict) and r.get("expand") is not None for r in returns):
            self.expand(node_id, [(r.get("expand"), tuple(r.get("result", ()))) if isinstance(r, dict)
                                  else (None, tuple(r)) for r in returns])
            return None
        return self.collect(self.ex.registry.get(self.class_type(node_id)), returns)

    @staticmethod
    def collect(cls, returns: list) -> NodeOutput:
        """Merge the per-call returns into per-slot value lists and one UI dict."""
        flags = nodespec.output_is_list(cls)
        values: list[list] = []  # per slot returned: as upstream, a node may return more or fewer than declared
        ui: dict | None = None
        for ret in returns:
            result = ret
            if isinstance(ret, ExecutionBlocker):
                result = (ret,) * len(flags)
            elif isinstance(ret, dict):
                if ret.get("ui") is not None:
                    ui = ui or {}
                    for key, items in ret["ui"].items():
                        ui.setdefault(key, []).extend(items if isinstance(items, (list, tuple)) else [items])
                result = ret.get("result", ())
                if isinstance(result, ExecutionBlocker):
                    result = (result,) * len(flags)
            if result is None:
                result = ()
            if not isinstance(result, (tuple, list)):
                raise TypeError(f"{cls.__name__} returned {type(result).__name__}, not a tuple of its outputs")
            for slot, value in enumerate(result):
                if slot == len(values):
                    values.append([])
                _add_output(values[slot], value, slot < len(flags) and flags[slot])
        return NodeOutput(values, ui)

    def finish(self, node_id: str, output: NodeOutput, *, replay: bool) -> None:
        self.done[node_id] = output
        self.executed.append(node_id)
        if output.ui is not None:
            self.outputs[node_id] = output.ui
            self.meta[node_id] = {"node_id": node_id, "display_node": self.display_id(node_id),
                                  "parent_node": self.graph.get_parent_node_id(node_id),
                                  "real_node_id": self.graph.get_real_node_id(node_id)}
            self.emit("executed", {"node": node_id, "display_node": self.display_id(node_id), "output": output.ui,
                                   "prompt_id": self.prompt_id})
        if not replay or output.ui is not None:
            total = self.progress_nodes.get(node_id, {}).get("max", 1.0)
            self.set_progress(node_id, total, total, "finished")

    def blocked(self, node_id: str, blocker: ExecutionBlocker) -> ExecutionBlocker:
        """A call skipped for a blocked input: the first node a message reaches reports it (the prompt goes on);
        the nodes after it are blocked silently."""
        if blocker.message is None:
            return blocker
        self.emit("execution_error", {
            "prompt_id": self.prompt_id, "node_id": node_id, "node_type": self.class_type(node_id),
            "executed": list(self.executed), "exception_message": f"Execution Blocked: {blocker.message}",
            "exception_type": "ExecutionBlocked", "traceback": [], "current_inputs": [], "current_outputs": []})
        return ExecutionBlocker(None)

    def error_report(self, err: NodeError) -> dict:
        cause = err.cause
        node_id = self.graph.get_real_node_id(err.node_id)  # a node expansion added is reported as its origin
        return {
            "prompt_id": self.prompt_id,
            "node_id": node_id,
            "node_type": self.class_type(node_id),
            "executed": [n for n in self.executed],
            "exception_message": f"{cause}\n",
            "exception_type": getattr(cause, "exception_type", None) or exception_type_name(type(cause)),
            "traceback": traceback.format_tb(cause.__traceback__),
            "current_inputs": {name: [_format_value(v) for v in values] for name, values in err.inputs.items()},
            "current_outputs": list(self.done),
            "timestamp": timestamp_ms(),
        }


def _blocker_in(kwargs: dict) -> ExecutionBlocker | None:
    """The ExecutionBlocker among a call's inputs (whole-list inputs included), if any."""
    for value in kwargs.values():
        for item in (value if isinstance(value, list) else (value,)):
            if isinstance(item, ExecutionBlocker):
                return item
    return None


def _add_output(values: list, value, is_list: bool) -> None:
    # a list output gives its items one by one; a blocker stands for the whole list
    values.extend(value) if is_list and not isinstance(value, ExecutionBlocker) else values.append(value)


def _format_value(value):
    if value is None or isinstance(value, (int, float, bool, str)):
        return value
    return str(value)
