"""`comfy_api.v0_0_2`: the 0.0.2 API, the same calls as `comfy_api.latest`."""
from ..latest import ComfyAPI as _Latest
from ..latest import ComfyAPISync as _LatestSync


class ComfyAPI(_Latest):
    VERSION = "0.0.2"


class ComfyAPISync(_LatestSync):
    VERSION = "0.0.2"
