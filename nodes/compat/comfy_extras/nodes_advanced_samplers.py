"""`comfy_extras.nodes_advanced_samplers`: its built-in node classes (see comfy_extras)."""
from . import exports

__getattr__ = exports(__name__)
