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
