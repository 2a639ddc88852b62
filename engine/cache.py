"""Node outputs cached across prompts, keyed by each node's input signature.

A node's signature digests its class, its `IS_CHANGED` answer, its constant inputs and the signatures of the
nodes it links to, so a node re-runs exactly when something it depends on changed (as in ComfyUI).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import uuid

from . import nodespec
from .graph import link_target

log = logging.getLogger("comfyd.cache")


@dataclasses.dataclass
class NodeOutput:
    values: list[list]  # per output slot, the list of values (list semantics: one per mapped call)
    ui: dict | None


class OutputCache:
    """Node outputs by signature, kept between prompts by ComfyUI's policies: "classic" keeps what the latest
    prompt used, "lru" the `lru_size` most recently used outputs of any prompt, "none" nothing."""

    def __init__(self, policy: str = "classic", lru_size: int = 0):
        if policy not in ("classic", "lru", "none"):
            raise ValueError(f"unknown cache policy {policy!r}")
        self.policy, self.lru_size = policy, lru_size
        self._entries: dict[str, NodeOutput] = {}  # oldest use first

    def get(self, signature: str) -> NodeOutput | None:
        output = self._entries.pop(signature, None)
        if output is not None:
            self._entries[signature] = output  # now the most recently used
        return output

    def put(self, signature: str, output: NodeOutput) -> None:
        self._entries.pop(signature, None)
        self._entries[signature] = output

    def retain(self, signatures: set[str]) -> None:
        """After a prompt that used `signatures`: forget what the policy does not keep."""
        if self.policy == "none":
            self._entries.clear()
        elif self.policy == "classic":
            self._entries = {s: o for s, o in self._entries.items() if s in signatures}
        else:
            for old in list(self._entries)[:max(0, len(self._entries) - self.lru_size)]:
                del self._entries[old]

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


def compute_signatures(prompt: dict, order: list[str], registry) -> dict[str, str]:
    """Signatures of the nodes in `order`, which lists every node after the nodes it links to."""
    signatures: dict[str, str] = {}
    specs: dict[str, dict] = {}  # per class: INPUT_TYPES may scan model folders, so once per prompt
    for node_id in order:
        node = prompt[node_id]
        cls = registry.get(node["class_type"])
        if node["class_type"] not in specs:
            specs[node["class_type"]] = nodespec.input_specs(cls)
        declared = specs[node["class_type"]]
        inputs = []
        for name, value in sorted(node.get("inputs", {}).items()):
            target = link_target(value)
            if target is not None and target[0] in signatures:
                inputs.append([name, "link", signatures[target[0]], target[1]])
            else:
                inputs.append([name, "value", value])
        payload = [node["class_type"], _changed_token(cls, node, declared), inputs]
        if getattr(cls, "NOT_IDEMPOTENT", False) or _takes_unique_id(declared):
            payload.append(node_id)  # its output may depend on which node it is
        encoded = json.dumps(payload, sort_keys=True, default=repr).encode()
        signatures[node_id] = hashlib.sha256(encoded).hexdigest()
    return signatures


def _changed_token(cls, node: dict, specs: dict):
    """The node's IS_CHANGED answer for its constant inputs; NaN or an error means 'always re-run'."""
    if not hasattr(cls, "IS_CHANGED"):
        return None
    try:
        token = nodespec.hook_call(cls, "IS_CHANGED", node.get("inputs", {}), specs)
    except Exception as ex:
        log.warning("IS_CHANGED of %s failed (%s); the node will re-run", node["class_type"], ex)
        return uuid.uuid4().hex
    if isinstance(token, float) and math.isnan(token):
        return uuid.uuid4().hex
    return repr(token) if not isinstance(token, (str, int, float, bool, type(None))) else token


def _takes_unique_id(specs: dict) -> bool:
    return any(spec.category == "hidden" and spec.type == "UNIQUE_ID" for spec in specs.values())
