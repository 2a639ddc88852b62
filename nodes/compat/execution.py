"""`execution`: ComfyUI's prompt executor module. comfyd's executor lives in its engine, out of packs' reach; this
module is here so that packs which import it, without needing anything from it at import time (rgthree-comfy, whose
older versions patched the executor), load."""
