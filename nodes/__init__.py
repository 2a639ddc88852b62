"""comfyd's node classes (ComfyUI's names and semantics) and the registry that loads them."""
