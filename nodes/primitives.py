"""Primitive value nodes (ComfyUI's `Primitive*`): a constant as an output."""
from __future__ import annotations

import sys


def _primitive(name: str, value_type: str, options: dict, display: str):
    def execute(self, value):
        return (value,)

    return type(name, (), {
        "INPUT_TYPES": classmethod(lambda cls: {"required": {"value": (value_type, dict(options))}}),
        "RETURN_TYPES": (value_type,),
        "FUNCTION": "execute",
        "CATEGORY": "utils/primitive",
        "execute": execute,
        "DISPLAY_NAME": display,
        "OUTPUT_TOOLTIPS": (None,),
        "API_NODE": False,
        "RELATIVE_PYTHON_MODULE": "comfy_extras.nodes_primitive",
    })


_MAX = sys.maxsize
NODE_CLASS_MAPPINGS = {
    "PrimitiveString": _primitive("PrimitiveString", "STRING", {"multiline": False}, "String"),
    "PrimitiveStringMultiline": _primitive("PrimitiveStringMultiline", "STRING", {"multiline": True},
                                           "String (Multiline)"),
    "PrimitiveInt": _primitive("PrimitiveInt", "INT", {"min": -_MAX, "max": _MAX, "control_after_generate": True},
                               "Int"),
    "PrimitiveFloat": _primitive("PrimitiveFloat", "FLOAT", {"min": -_MAX, "max": _MAX}, "Float"),
    "PrimitiveBoolean": _primitive("PrimitiveBoolean", "BOOLEAN", {}, "Boolean"),
}
NODE_DISPLAY_NAME_MAPPINGS = {name: cls.DISPLAY_NAME for name, cls in NODE_CLASS_MAPPINGS.items()}
