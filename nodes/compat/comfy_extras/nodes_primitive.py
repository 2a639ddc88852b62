"""`comfy_extras.nodes_primitive`: its built-in node classes (see comfy_extras)."""
from . import exports

__getattr__ = exports(__name__)
