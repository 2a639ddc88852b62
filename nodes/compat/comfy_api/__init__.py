"""`comfy_api`: ComfyUI's versioned API for nodes (`comfy_api.latest`, `comfy_api.v0_0_2`)."""
