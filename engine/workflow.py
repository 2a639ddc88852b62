"""UI-format workflows (what the frontend saves) to API-format prompts (what POST /prompt executes).

The rules are those of the official frontend's ``graphToPrompt`` (comfyui-frontend-package 1.58):

- A node's widgets are made from its /object_info inputs in ``input_order`` (required, then optional), one per
  input of a widget type (INT, FLOAT, STRING, BOOLEAN, COMBO, ...) unless ``forceInput``. ``widgets_values`` lists
  every widget's value in that order, including widgets whose input is linked, plus the frontend's helper widgets
  that are not inputs: a control mode after an INT/FLOAT with ``control_after_generate`` (INT inputs named seed or
  noise_seed get one unless the option says false), a control mode and a filter after such a COMBO, and an
  "upload" button on nodes with a media-upload combo. Missing values take the widget's default;
  ``widgets_values_named`` (saved since frontend 1.5x) is read only when the positional list fits no layout.
- A linked input overrides its widget's value with ``[origin id, output slot]``; a link that resolves to nothing
  (a muted origin, a PrimitiveNode, an unconnected reroute) leaves the widget value.
- Frontend-only nodes are not sent: Note and MarkdownNote are dropped, Reroute is followed through, and a
  PrimitiveNode writes its value into the widgets it is linked to directly.
- Muted nodes (mode 2) are dropped; a bypassed node (mode 4) hands each output the input of the same slot if the
  types fit, else the first input of the requested type.
- Subgraph nodes (``definitions.subgraphs``) are flattened: an inner node gets the id ``"<subgraph node id>:<inner
  id>"`` (nested: joined further). A subgraph input takes the outer link, else the value of the widget it promotes
  (the subgraph node's own ``widgets_values``, else the inner widget's).
- STRING widgets with ``dynamicPrompts`` are expanded: ``{a|b}`` picks one option, comments are dropped.
- List values are sent as ``{"__value__": [...]}``, and links to nodes that are not sent are removed.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Any

MODE_MUTED = 2
MODE_BYPASSED = 4
SUBGRAPH_INPUT_NODE = "-10"
SUBGRAPH_OUTPUT_NODE = "-20"

# Node types that exist only in the frontend.
NOTES = frozenset({"Note", "MarkdownNote"})
FRONTEND_ONLY = NOTES | {"PrimitiveNode", "Reroute"}

# Input types the frontend draws as widgets (its ComfyWidgets table); any other type is a plain socket.
WIDGET_TYPES = frozenset({
    "INT", "FLOAT", "BOOLEAN", "STRING", "COMBO", "MARKDOWN", "COLOR", "TEXTAREA", "CURVE", "RANGE", "BOUNDING_BOX",
    "BOUNDING_BOXES", "COLORS", "PAINTER", "COMPOSITOR", "VIDEO_EDIT", "IMAGECOMPARE", "CHART", "GALLERIA",
    "RESOLUTION_PREVIEW", "LIGHT_INFO_PREVIEW",
})
SEED_NAMES = ("seed", "noise_seed")
MEDIA_UPLOAD_OPTIONS = ("image_upload", "video_upload", "animated_image_upload")
CONTROL = "control_after_generate"


class WorkflowError(ValueError):
    """The workflow cannot be converted (malformed graph, circular links)."""


class UnknownNodeTypes(WorkflowError):
    """Nodes whose type the server does not have; ``types`` lists them, sorted."""

    def __init__(self, nodes: dict[str, str]):
        self.nodes = nodes  # execution id -> type
        self.types = tuple(sorted(set(nodes.values())))
        hint = ""
        if any(t.startswith(("workflow>", "workflow/")) for t in self.types):
            hint = " (legacy group nodes: open and save the workflow in a current frontend to make them subgraphs)"
        listed = ", ".join(f"{t} (node {', '.join(i for i, n in nodes.items() if n == t)})" for t in self.types)
        super().__init__(f"Unknown node types: {listed}{hint}")


def is_ui_workflow(data: Any) -> bool:
    """True for the frontend's workflow format ({"nodes": [...], "links": [...], ...}), False for API prompts."""
    return isinstance(data, dict) and isinstance(data.get("nodes"), list) and isinstance(data.get("links", []), list)


# -- widgets ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Widget:
    name: str
    spec: tuple | None  # (type, options) of the input it edits; None for helper widgets that are not inputs


def _options(spec) -> dict:
    return spec[1] if isinstance(spec, (list, tuple)) and len(spec) > 1 and isinstance(spec[1], dict) else {}


def _kind(spec) -> str:
    declared = spec[0] if isinstance(spec, (list, tuple)) and spec else spec
    if isinstance(declared, list) or declared == "COMBO":
        return "COMBO"
    return _options(spec).get("widgetType") or (declared if isinstance(declared, str) else "")


def _ordered_inputs(info: dict) -> list[tuple[str, Any, bool]]:
    """(name, spec, required) in the frontend's order: input_order's required then optional names, then any
    other declared input; declaration order (required first) when there is no input_order."""
    declared = info.get("input") or {}
    order = info.get("input_order") or {}
    out = []
    for category in ("required", "optional"):
        specs = declared.get(category) or {}
        out += [(name, specs[name], category == "required") for name in order.get(category) or [] if name in specs]
    seen = {name for name, _, _ in out}
    for category in ("required", "optional"):
        specs = declared.get(category) or {}
        out += [(name, spec, category == "required") for name, spec in specs.items() if name not in seen]
    return out


def _helpers_after(name: str, kind: str, options: dict) -> list[str]:
    if kind == "INT" and options.get(CONTROL, name in SEED_NAMES):
        return [CONTROL]
    if kind == "FLOAT" and options.get(CONTROL):
        return [CONTROL]
    if kind == "COMBO" and options.get(CONTROL):
        return [CONTROL, "control_filter_list"]
    return []


def widget_layout(info: dict, *, with_force_inputs: bool = False) -> list[Widget]:
    """The node's widgets in ``widgets_values`` order. ``with_force_inputs`` gives the layout of workflows saved
    when forceInput inputs still had a (placeholder) value, which the frontend still reads."""
    layout, upload, required_end = [], False, None
    for name, spec, required in _ordered_inputs(info):
        if not required and required_end is None:
            required_end = len(layout)
        kind, options = _kind(spec), _options(spec)
        if options.get("forceInput"):
            if with_force_inputs:
                layout.append(Widget(name, None))
            continue
        if kind not in WIDGET_TYPES:
            continue
        layout.append(Widget(name, tuple(spec) if isinstance(spec, (list, tuple)) else (spec,)))
        layout += [Widget(helper, None) for helper in _helpers_after(name, kind, options)]
        upload = upload or (required and kind == "COMBO" and any(options.get(o) for o in MEDIA_UPLOAD_OPTIONS))
    if upload:
        # The frontend appends an "upload" input to the required ones; input_order does not name it, so with
        # input_order it comes last.
        at = len(layout) if info.get("input_order") or required_end is None else required_end
        layout.insert(at, Widget("upload", None))
    return layout


def widget_default(spec) -> Any:
    """The value a fresh widget starts with."""
    kind, options = _kind(spec), _options(spec)
    if "default" in options:
        return options["default"]
    if kind == "COMBO":
        values = spec[0] if isinstance(spec[0], list) else options.get("options") or []
        return values[0] if values else None
    return {"INT": 0, "FLOAT": 0, "STRING": "", "BOOLEAN": False}.get(kind)


def _positional(values: list, info: dict) -> list[tuple[Widget, Any]] | None:
    """``values`` against the widget layout, or None when their count fits no layout."""
    for layout in (widget_layout(info), widget_layout(info, with_force_inputs=True)):
        if len(values) == len(layout):
            return list(zip(layout, values))
    return None


def widget_values(node: dict, info: dict) -> dict[str, Any]:
    """The saved value of each widget input of ``node`` (a UI node), defaults filling the gaps.

    Like the frontend (whose restore-by-name setting is off by default), the positional ``widgets_values`` rule;
    ``widgets_values_named`` is used only when their count fits no layout (a node definition that changed).
    """
    saved, named = node.get("widgets_values"), node.get("widgets_values_named")
    if isinstance(saved, dict):
        saved, named = None, saved  # some custom nodes save their widgets by name
    pairs = _positional(saved, info) if isinstance(saved, list) else None
    if pairs is None and isinstance(named, dict):
        pairs = [(w, named[w.name]) for w in widget_layout(info) if w.name in named]
    if pairs is None:
        pairs = list(zip(widget_layout(info), saved if isinstance(saved, list) else []))
    values = {w.name: v for w, v in pairs if w.spec is not None}
    for w in widget_layout(info):
        if w.spec is None:
            continue
        if w.name not in values:
            values[w.name] = widget_default(w.spec)
        elif values[w.name] is None and _kind(w.spec) == "COMBO":
            values[w.name] = widget_default(w.spec)  # the frontend selects the first option of an empty combo
    if node.get("type") in ("KSampler", "KSamplerAdvanced") and str(values.get("sampler_name", "")).startswith(
            "sample_"):
        values["sampler_name"] = values["sampler_name"][len("sample_"):]  # sampler names of 2023 workflows
    return values


def expand_dynamic_prompt(text: str, rng: random.Random) -> str:
    """The frontend's dynamic prompts: ``{a|b|c}`` becomes one option picked at random (nested braces allowed),
    ``//`` and ``/* */`` comments are removed, and ``\\{`` ``\\|`` ``\\}`` stand for the literal characters."""
    text = re.sub(r"/\*[\s\S]*?\*/|//.*", "", text)
    out, pos = [], 0

    def escaped() -> str:
        nonlocal pos
        pos += 1
        return "\\" + text[pos - 1] if pos <= len(text) else "\\"

    def choice() -> str:
        nonlocal pos
        options, current, depth = [], "", 0
        while pos < len(text):
            ch = text[pos]
            pos += 1
            if ch == "\\":
                current += escaped()
                continue
            if ch == "{":
                depth += 1
            elif ch == "}":
                if not depth:
                    break
                depth -= 1
            elif ch == "|" and not depth:
                options.append(current)
                current = ""
                continue
            current += ch
        options.append(current)
        return expand_dynamic_prompt(options[int(rng.random() * len(options))], rng)

    while pos < len(text):
        ch = text[pos]
        pos += 1
        out.append(escaped() if ch == "\\" else choice() if ch == "{" else ch)
    return re.sub(r"\\([{}|])", r"\1", "".join(out))


# -- graph ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Link:
    origin_id: str
    origin_slot: int
    target_id: str
    target_slot: int
    type: Any = "*"


@dataclass
class Graph:
    """The root graph or one subgraph definition."""
    nodes: dict[str, dict]
    links: dict[str, Link]
    inputs: list[dict] = field(default_factory=list)  # subgraph input slots, in order
    outputs: list[dict] = field(default_factory=list)

    def links_from(self, node_id: str, slot: int) -> list[Link]:
        return [link for link in self.links.values() if link.origin_id == node_id and link.origin_slot == slot]


def _parse_link(raw) -> tuple[str, Link] | None:
    if isinstance(raw, list) and len(raw) >= 5:
        return str(raw[0]), Link(str(raw[1]), int(raw[2]), str(raw[3]), int(raw[4]), raw[5] if len(raw) > 5 else "*")
    if isinstance(raw, dict) and "origin_id" in raw:
        return str(raw["id"]), Link(str(raw["origin_id"]), int(raw["origin_slot"]), str(raw["target_id"]),
                                    int(raw["target_slot"]), raw.get("type", "*"))
    return None


def parse_graph(data: dict) -> Graph:
    links = dict(filter(None, (_parse_link(raw) for raw in data.get("links") or [])))
    nodes = {str(node["id"]): node for node in data.get("nodes") or [] if isinstance(node, dict) and "id" in node}
    return Graph(nodes, links, list(data.get("inputs") or []), list(data.get("outputs") or []))


def subgraph_definitions(workflow: dict) -> dict[str, Graph]:
    """Every subgraph definition by id, nested definitions included."""
    found: dict[str, Graph] = {}
    pending = [workflow]
    while pending:
        holder = pending.pop()
        for raw in (holder.get("definitions") or {}).get("subgraphs") or []:
            if isinstance(raw, dict) and raw.get("id") not in found:
                found[raw["id"]] = parse_graph(raw)
                pending.append(raw)
    return found


def types_are_compatible(a: Any, b: Any) -> bool:
    """Litegraph's connection rule: "*" or empty matches anything; comma lists match if any member does."""
    if a in ("", "*", None, 0) or b in ("", "*", None, 0) or a == b:
        return True
    a, b = str(a).lower(), str(b).lower()
    return any(x == y or x in ("", "*") or y in ("", "*") for x in a.split(",") for y in b.split(","))


def bypass_input_slot(node: dict, slot: int, wanted: Any) -> int:
    """The input a bypassed node passes to output ``slot`` for a consumer of type ``wanted``; -1 if none."""
    inputs = node.get("inputs") or []
    outputs = node.get("outputs") or []
    if wanted in ("*", "", None):
        return slot if len(inputs) > slot else 0
    output_type = outputs[slot].get("type") if slot < len(outputs) else "*"
    if slot < len(inputs) and types_are_compatible(inputs[slot].get("type"), output_type) \
            and types_are_compatible(inputs[slot].get("type"), wanted):
        return slot
    for i, inp in enumerate(inputs):
        if inp.get("type") == wanted:
            return i
    for i, inp in enumerate(inputs):
        if types_are_compatible(inp.get("type"), output_type) and types_are_compatible(inp.get("type"), wanted):
            return i
    return -1


# -- conversion -------------------------------------------------------------------------------------------------


@dataclass
class Instance:
    """One node at one place in the flattened graph (a node inside a subgraph used twice appears twice)."""
    node: dict
    graph: Graph
    path: tuple[str, ...]  # ids of the subgraph nodes it sits in, outermost first
    host: Instance | None  # the subgraph node whose definition ``graph`` is

    @property
    def id(self) -> str:
        return ":".join(self.path + (str(self.node["id"]),))

    @property
    def type(self) -> str:
        return self.node.get("type") or ""

    @property
    def mode(self) -> int:
        return self.node.get("mode") or 0

    def child_id(self, node_id: str) -> str:
        return ":".join(self.path + (node_id,))


@dataclass(frozen=True)
class Origin:
    node_id: str
    slot: int


@dataclass(frozen=True)
class Value:
    value: Any


Source = Origin | Value | None


class _Converter:
    """One conversion: the flattened node instances, then each sent node's inputs resolved through them."""

    def __init__(self, workflow: dict, object_info: dict, rng: random.Random):
        self.object_info = object_info
        self.rng = rng
        self.definitions = subgraph_definitions(workflow)
        self.instances: dict[str, Instance] = {}
        self._collect(parse_graph(workflow), (), None, ())
        self.primitive_values = self._primitive_values()
        self._widgets: dict[str, dict] = {}

    def _collect(self, graph: Graph, path: tuple[str, ...], host: Instance | None, open_defs: tuple[str, ...]):
        for node in graph.nodes.values():
            inst = Instance(node, graph, path, host)
            self.instances[inst.id] = inst
            definition = self.definitions.get(inst.type)
            if definition is None or inst.mode in (MODE_MUTED, MODE_BYPASSED):
                continue
            if inst.type in open_defs:
                raise WorkflowError(f"subgraph {inst.type} contains itself (node {inst.id})")
            self._collect(definition, path + (str(node["id"]),), inst, open_defs + (inst.type,))

    def _primitive_values(self) -> dict[tuple[str, str], Any]:
        """(target id, widget name) -> value that a PrimitiveNode writes into a directly linked widget."""
        values = {}
        for inst in self.instances.values():
            if inst.type != "PrimitiveNode":
                continue
            named, saved = inst.node.get("widgets_values_named"), inst.node.get("widgets_values")
            if isinstance(saved, list) and saved:
                value = saved[0]
            elif isinstance(named, dict) and "value" in named:
                value = named["value"]
            else:
                continue
            for link in inst.graph.links_from(str(inst.node["id"]), 0):
                target = inst.graph.nodes.get(link.target_id)
                inputs = (target or {}).get("inputs") or []
                widget = inputs[link.target_slot].get("widget") if link.target_slot < len(inputs) else None
                if isinstance(widget, dict) and widget.get("name"):
                    values[(inst.child_id(link.target_id), widget["name"])] = value
        return values

    def widget_inputs(self, inst: Instance) -> dict[str, Any]:
        """The values of ``inst``'s widgets as sent to the server (before links override them)."""
        if inst.id not in self._widgets:
            info = self.object_info[inst.type]
            values = widget_values(inst.node, info)
            for (target, name), value in self.primitive_values.items():
                if target == inst.id and name in values:
                    values[name] = value
            for w in widget_layout(info):
                if w.spec is not None and _options(w.spec).get("dynamicPrompts") and isinstance(values[w.name], str):
                    values[w.name] = expand_dynamic_prompt(values[w.name], self.rng)
            self._widgets[inst.id] = values
        return self._widgets[inst.id]

    # -- link resolution (the frontend's ExecutableNodeDTO.resolveInput / resolveOutput) --

    def resolve_input(self, inst: Instance, slot: int, wanted: Any, seen: set) -> Source:
        self._visit(seen, inst, "input", slot)
        inputs = inst.node.get("inputs") or []
        if slot >= len(inputs) or inputs[slot].get("link") is None:
            return None
        link = inst.graph.links.get(str(inputs[slot]["link"]))
        if link is None:
            return None  # a dangling link id; the frontend drops these when it loads the workflow
        if link.origin_id == SUBGRAPH_INPUT_NODE and inst.host is not None:
            return self._resolve_subgraph_input(inst.host, link.origin_slot, seen)
        origin = self.instances.get(inst.child_id(link.origin_id))
        if origin is None:
            return None
        return self.resolve_output(origin, link.origin_slot, wanted or inputs[slot].get("type"), seen)

    def resolve_output(self, inst: Instance, slot: int, wanted: Any, seen: set) -> Source:
        self._visit(seen, inst, "output", slot)
        if inst.mode == MODE_MUTED:
            return None
        if inst.mode == MODE_BYPASSED:
            passed = bypass_input_slot(inst.node, slot, wanted)
            return None if passed < 0 else self.resolve_input(inst, passed, None, seen)
        definition = self.definitions.get(inst.type)
        if definition is not None:
            return self._resolve_subgraph_output(inst, definition, slot, wanted, seen)
        if inst.type in FRONTEND_ONLY:  # a Reroute passes its input on; a PrimitiveNode has none
            return self.resolve_input(inst, slot, wanted, seen)
        return Origin(inst.id, slot)

    def _resolve_subgraph_output(self, inst: Instance, definition: Graph, slot: int, wanted, seen) -> Source:
        link = next((l for l in definition.links.values()
                     if l.target_id == SUBGRAPH_OUTPUT_NODE and l.target_slot == slot), None)
        if link is None:
            return None
        if link.origin_id == SUBGRAPH_INPUT_NODE:  # an input wired straight to an output
            return self._resolve_subgraph_input(inst, link.origin_slot, seen)
        inner = self.instances.get(f"{inst.id}:{link.origin_id}")
        return None if inner is None else self.resolve_output(inner, link.origin_slot, wanted, seen)

    def _resolve_subgraph_input(self, host: Instance, index: int, seen: set) -> Source:
        definition = self.definitions[host.type]
        if index >= len(definition.inputs):
            return None
        name = definition.inputs[index].get("name")
        outer = host.node.get("inputs") or []
        slot = next((i for i, inp in enumerate(outer) if inp.get("name") == name), None)
        if slot is not None and outer[slot].get("link") is not None:
            return self.resolve_input(host, slot, None, seen)
        return self._promoted_value(host, index)

    def _promoted_value(self, host: Instance, index: int) -> Source:
        """The value of the widget that subgraph input ``index`` of ``host`` promotes, if it promotes one."""
        definition = self.definitions[host.type]
        promoted = [i for i in range(len(definition.inputs)) if self._promoted_source(host, i) is not None]
        if index not in promoted:
            return None
        name = definition.inputs[index].get("name")
        named, saved = host.node.get("widgets_values_named"), host.node.get("widgets_values")
        position = promoted.index(index)
        if isinstance(saved, list) and (len(saved) == len(promoted) or not isinstance(named, dict)):
            if position < len(saved) and saved[position] is not None:
                return Value(saved[position])
        elif isinstance(named, dict) and named.get(name) is not None:
            return Value(named[name])
        inner, widget_name = self._promoted_source(host, index)
        if inner.type in self.definitions:
            inner_def = self.definitions[inner.type]
            inner_index = next(i for i, inp in enumerate(inner_def.inputs) if inp.get("name") == widget_name)
            return self._promoted_value(inner, inner_index)
        if inner.type not in self.object_info:
            return None
        return Value(self.widget_inputs(inner).get(widget_name))

    def _promoted_source(self, host: Instance, index: int) -> tuple[Instance, str] | None:
        """The inner node and widget name behind subgraph input ``index``: the first link to a widget input."""
        definition = self.definitions[host.type]
        for link in definition.links_from(SUBGRAPH_INPUT_NODE, index):
            inner = self.instances.get(f"{host.id}:{link.target_id}")
            inputs = (inner.node.get("inputs") or []) if inner else []
            if link.target_slot >= len(inputs):
                continue
            widget = inputs[link.target_slot].get("widget")
            if not isinstance(widget, dict) or not widget.get("name"):
                continue
            if inner.type in self.definitions:
                nested = self.definitions[inner.type]
                nested_index = next((i for i, inp in enumerate(nested.inputs)
                                     if inp.get("name") == inputs[link.target_slot].get("name")), None)
                if nested_index is None or self._promoted_source(inner, nested_index) is None:
                    continue
                return inner, inputs[link.target_slot]["name"]
            return inner, widget["name"]
        return None

    @staticmethod
    def _visit(seen: set, inst: Instance, side: str, slot: int) -> None:
        key = (inst.id, side, slot)
        if key in seen:
            raise WorkflowError(f"circular link at {side} {slot} of node {inst.id} ({inst.type})")
        seen.add(key)

    # -- output --

    def sends(self, inst: Instance) -> bool:
        # (the insides of muted and bypassed subgraph nodes are never collected)
        return inst.mode not in (MODE_MUTED, MODE_BYPASSED) and inst.type not in FRONTEND_ONLY \
            and inst.type not in self.definitions

    def prompt(self) -> dict:
        unknown = {i.id: i.type for i in self.instances.values() if self.sends(i) and i.type not in self.object_info}
        if unknown:
            raise UnknownNodeTypes(unknown)
        prompt = {}
        for inst in self.instances.values():
            if not self.sends(inst):
                continue
            inputs = {name: _wrap(value) for name, value in self.widget_inputs(inst).items()}
            for slot, inp in enumerate(inst.node.get("inputs") or []):
                source = self.resolve_input(inst, slot, None, set())
                if isinstance(source, Value):
                    inputs[inp["name"]] = _wrap(source.value)
                elif isinstance(source, Origin):
                    inputs[inp["name"]] = [source.node_id, source.slot]
            title = inst.node.get("title") or self.object_info[inst.type].get("display_name") or inst.type
            prompt[inst.id] = {"inputs": inputs, "class_type": inst.type, "_meta": {"title": title}}
        for entry in prompt.values():  # links to nodes that are not sent
            for name, value in list(entry["inputs"].items()):
                if isinstance(value, list) and len(value) == 2 and value[0] not in prompt:
                    del entry["inputs"][name]
        return prompt


def _wrap(value):
    # A list would read as a link; the server unwraps {"__value__": [...]}.
    return {"__value__": value} if isinstance(value, list) else value


def to_api_prompt(workflow: dict, object_info: dict, *, rng: random.Random | None = None) -> dict:
    """The API-format prompt ({node id: {"class_type", "inputs", "_meta"}}) for a UI-format ``workflow``.

    ``object_info`` is GET /object_info's answer (at least the node types the workflow uses). ``rng`` drives the
    choices of dynamic prompts (``{a|b}``). Raises UnknownNodeTypes for node types missing from ``object_info``
    and WorkflowError for graphs that cannot be resolved.
    """
    if not is_ui_workflow(workflow):
        raise WorkflowError("not a UI-format workflow (expected an object with a 'nodes' list)")
    return _Converter(workflow, object_info, rng or random.Random()).prompt()
