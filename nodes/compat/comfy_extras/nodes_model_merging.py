"""`comfy_extras.nodes_model_merging`: its built-in node classes (see comfy_extras)."""
from . import exports

__getattr__ = exports(__name__)
