"""Small helpers over the API-format prompt graph: {node_id: {"class_type", "inputs": {name: value | [id, slot]}}}."""
from __future__ import annotations


def is_link(value) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], (str, int)) \
        and isinstance(value[1], int) and not isinstance(value[1], bool)


def link_target(value) -> tuple[str, int] | None:
    """(node id, output slot) of a link input, or None when `value` is not a well-formed link."""
    if not is_link(value) or isinstance(value[0], bool):
        return None
    return str(value[0]), value[1]


class DependencyCycleError(Exception):
    """Expansion linked nodes into a cycle (static cycles are refused by validation)."""

    exception_type = "graph.DependencyCycleError"  # what ComfyUI reports as exception_type


class ExecutionBlocker:
    """A value a node returns (in place of its outputs, or of one output) to stop the nodes that use it from
    running. With a message, the first node it stops reports that as an error; with None, nodes stop silently."""

    def __init__(self, message: str | None):
        self.message = message


class GraphNode:
    """One node of a GraphBuilder graph."""

    def __init__(self, node_id: str, class_type: str, inputs: dict):
        self.id = node_id
        self.class_type = class_type
        self.inputs = inputs
        self.override_display_id: str | None = None

    def out(self, index: int) -> list:
        return [self.id, index]

    def set_input(self, key: str, value) -> None:
        if value is None:
            self.inputs.pop(key, None)
        else:
            self.inputs[key] = value

    def get_input(self, key: str):
        return self.inputs.get(key)

    def set_override_display_id(self, display_id: str | None) -> None:
        self.override_display_id = display_id

    def serialize(self) -> dict:
        node = {"class_type": self.class_type, "inputs": self.inputs}
        if self.override_display_id is not None:
            node["override_display_id"] = self.override_display_id
        return node


class GraphBuilder:
    """Builds the API-format subgraph a node returns as {"expand": builder.finalize(), "result": ...}.

    Node ids get a prefix that is unique per running node and call (the executor sets the default before each
    call), so the same node expanding again, or twice in one list, never reuses an id."""

    _prefix_root = ""
    _prefix_call = 0
    _prefix_graph = 0

    def __init__(self, prefix: str | None = None):
        self.prefix = GraphBuilder.alloc_prefix() if prefix is None else prefix
        self.nodes: dict[str, GraphNode] = {}
        self.id_gen = 1

    @classmethod
    def set_default_prefix(cls, prefix_root: str, call_index: int, graph_index: int = 0) -> None:
        GraphBuilder._prefix_root, GraphBuilder._prefix_call = prefix_root, call_index
        GraphBuilder._prefix_graph = graph_index

    @classmethod
    def alloc_prefix(cls, root: str | None = None, call_index: int | None = None,
                     graph_index: int | None = None) -> str:
        root = GraphBuilder._prefix_root if root is None else root
        call_index = GraphBuilder._prefix_call if call_index is None else call_index
        graph_index = GraphBuilder._prefix_graph if graph_index is None else graph_index
        GraphBuilder._prefix_graph += 1
        return f"{root}.{call_index}.{graph_index}."

    def node(self, class_type: str, id: str | None = None, **inputs) -> GraphNode:  # noqa: A002 (upstream's name)
        if id is None:
            id = str(self.id_gen)
            self.id_gen += 1
        node_id = self.prefix + id
        if node_id not in self.nodes:
            self.nodes[node_id] = GraphNode(node_id, class_type, inputs)
        return self.nodes[node_id]

    def lookup_node(self, id: str) -> GraphNode | None:  # noqa: A002
        return self.nodes.get(self.prefix + id)

    def remove_node(self, id: str) -> None:  # noqa: A002
        del self.nodes[self.prefix + id]

    def finalize(self) -> dict:
        return {node_id: node.serialize() for node_id, node in self.nodes.items()}

    def replace_node_output(self, node_id: str, index: int, new_value) -> None:
        """Point every input linked to (node_id, index) at `new_value`, or unlink it when that is None."""
        source = [self.prefix + node_id, index]
        for node in self.nodes.values():
            for key, value in list(node.inputs.items()):
                if is_link(value) and list(value) == source:
                    node.set_input(key, new_value)


def add_graph_prefix(graph: dict, outputs, prefix: str) -> tuple[dict, tuple]:
    """`graph` with `prefix` added to every node id and internal link, and `outputs` relinked to match."""
    def relink(value):
        return [prefix + str(value[0]), value[1]] if is_link(value) else value

    renamed = {prefix + node_id: {"class_type": node["class_type"],
                                  "inputs": {k: relink(v) for k, v in node.get("inputs", {}).items()}}
               for node_id, node in graph.items()}
    return renamed, tuple(relink(o) for o in outputs)


class DynamicPrompt:
    """A running prompt's graph: the nodes submitted plus those that expansion added (each with the node that
    created it and the id the UI shows for it). Nodes receive it as the DYNPROMPT hidden input."""

    def __init__(self, original_prompt: dict):
        self.original_prompt = original_prompt
        self.ephemeral_prompt: dict[str, dict] = {}
        self.ephemeral_parents: dict[str, str] = {}
        self.ephemeral_display: dict[str, str] = {}

    def get_node(self, node_id: str) -> dict:
        node = self.ephemeral_prompt.get(node_id) or self.original_prompt.get(node_id)
        if node is None:
            raise KeyError(f"Node {node_id} not found")
        return node

    def has_node(self, node_id: str) -> bool:
        return node_id in self.original_prompt or node_id in self.ephemeral_prompt

    def add_ephemeral_node(self, node_id: str, node: dict, parent_id: str, display_id: str) -> None:
        self.ephemeral_prompt[node_id] = node
        self.ephemeral_parents[node_id] = parent_id
        self.ephemeral_display[node_id] = display_id

    def get_real_node_id(self, node_id: str) -> str:
        while node_id in self.ephemeral_parents:
            node_id = self.ephemeral_parents[node_id]
        return node_id

    def get_parent_node_id(self, node_id: str) -> str | None:
        return self.ephemeral_parents.get(node_id)

    def get_display_node_id(self, node_id: str) -> str:
        while node_id in self.ephemeral_display:
            node_id = self.ephemeral_display[node_id]
        return node_id

    def all_node_ids(self) -> set[str]:
        return set(self.original_prompt) | set(self.ephemeral_prompt)

    def get_original_prompt(self) -> dict:
        return self.original_prompt
