"""`comfy_extras.nodes_post_processing`: its built-in node classes (see comfy_extras)."""
from . import exports

__getattr__ = exports(__name__)
