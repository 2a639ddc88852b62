"""Python clients for comfyd: `Comfy` runs prompts in this process (no web server), `client.RemoteComfyClient`
talks to a running server."""
from .embedded import Comfy, PromptFailed, PromptInvalid

__all__ = ["Comfy", "PromptFailed", "PromptInvalid"]
