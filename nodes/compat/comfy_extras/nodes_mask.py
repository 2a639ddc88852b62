"""`comfy_extras.nodes_mask`: its built-in node classes (see comfy_extras)."""
from nodes.mask import composite  # noqa: F401 (the compositing function packs reuse)

from . import exports

__getattr__ = exports(__name__)
