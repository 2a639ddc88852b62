"""`comfy_api.v0_0_2`: the 0.0.2 API, the same calls and node API as `comfy_api.latest`."""
from ..latest import ComfyAPI as _Latest
from ..latest import ComfyAPISync as _LatestSync
from ..latest import ComfyExtension, io, ui  # noqa: F401 (re-exported)
from ..latest import Input as _Input
from ..latest import InputImpl as _InputImpl
from ..latest import Types as _Types


class ComfyAPI(_Latest):
    VERSION = "0.0.2"


class ComfyAPISync(_LatestSync):
    VERSION = "0.0.2"


class Input(_Input):
    pass


class InputImpl(_InputImpl):
    pass


class Types(_Types):
    pass
