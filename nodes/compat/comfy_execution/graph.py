"""`comfy_execution.graph`: ExecutionBlocker and the DynamicPrompt nodes receive as DYNPROMPT (see engine.graph)."""
from engine.graph import DynamicPrompt, ExecutionBlocker  # noqa: F401 (re-exported)
