"""`comfy.sdxl_clip`: ComfyUI's SDXL text encoder classes, which packs test `clip.cond_stage_model` against.
comfyd's text encoders are its own classes, so such checks are False and the packs take their generic path; the
classes cannot be made (NotImplementedError)."""
from __future__ import annotations


class _NotComfydEncoder:
    def __init__(self, *args, **kwargs):
        raise NotImplementedError(f"comfyd does not build ComfyUI's {type(self).__name__}: load text encoders with "
                                  "CLIPLoader / CheckpointLoaderSimple")


class SDXLClipG(_NotComfydEncoder):
    pass


class SDXLClipModel(_NotComfydEncoder):
    pass


class SDXLRefinerClipModel(_NotComfydEncoder):
    pass
