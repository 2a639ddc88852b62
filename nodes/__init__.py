"""comfyd's node classes (ComfyUI's names and semantics) and the registry that loads them.

`MAX_RESOLUTION`, `NODE_CLASS_MAPPINGS` and `NODE_DISPLAY_NAME_MAPPINGS` are what custom nodes written for
ComfyUI read from its `nodes` module; the registry points the mappings at its own tables when it loads them.
"""
MAX_RESOLUTION = 16384
NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}
