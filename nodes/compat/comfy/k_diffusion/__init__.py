"""`comfy.k_diffusion`: the k-diffusion helpers samplers written for ComfyUI use."""
