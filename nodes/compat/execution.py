"""`execution`: ComfyUI's prompt executor module. comfyd's executor lives in its engine, out of packs' reach; this
module is here so that packs which import it load: rgthree-comfy (whose older versions patched the executor) needs
nothing from it at import time, Impact Pack keeps a reference to `PromptExecutor.handle_execution_error`."""
from __future__ import annotations


class PromptExecutor:
    """ComfyUI's executor class, for the names packs read from it at import. comfyd runs prompts in its engine: this
    one cannot be made or used, and raises NotImplementedError if a pack tries."""

    def __init__(self, *args, **kwargs):
        raise NotImplementedError("comfyd runs prompts in its own engine: execution.PromptExecutor is not available")

    def execute(self, *args, **kwargs):
        raise NotImplementedError("comfyd runs prompts in its own engine: execution.PromptExecutor is not available")

    def handle_execution_error(self, *args, **kwargs):
        raise NotImplementedError("comfyd reports execution errors itself: PromptExecutor is not available")
