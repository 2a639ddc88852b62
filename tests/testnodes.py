"""A pack of purpose-built nodes that drive the executor in tests (registered only by the tests)."""
from __future__ import annotations

import threading
import time

from engine import context

# Every call of a test node appends (class name, node id) here so tests can see what really ran.
CALLS: list[tuple[str, str]] = []
_lock = threading.Lock()


def _record(name: str, unique_id) -> None:
    with _lock:
        CALLS.append((name, str(unique_id)))


class TestConstant:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT", {"default": 0, "min": -1000, "max": 1000})},
                "hidden": {"unique_id": "UNIQUE_ID"}}
    RETURN_TYPES = ("INT",)
    FUNCTION = "run"
    CATEGORY = "tests"

    def run(self, value, unique_id):
        _record("TestConstant", unique_id)
        return (value,)


class TestAdd:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"a": ("INT", {}), "b": ("INT", {"default": 0})}, "hidden": {"unique_id": "UNIQUE_ID"}}
    RETURN_TYPES = ("INT",)
    RETURN_NAMES = ("sum",)
    FUNCTION = "run"
    CATEGORY = "tests"
    DESCRIPTION = "Adds two integers."

    def run(self, a, b, unique_id):
        _record("TestAdd", unique_id)
        return (a + b,)


class TestOutput:
    """An output node that reports the values it received as UI output."""
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT,FLOAT,STRING", {})}, "hidden": {"unique_id": "UNIQUE_ID"}}
    RETURN_TYPES = ()
    FUNCTION = "run"
    OUTPUT_NODE = True
    CATEGORY = "tests"

    def run(self, value, unique_id):
        _record("TestOutput", unique_id)
        return {"ui": {"values": [value]}}


class TestListOutput:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"count": ("INT", {"default": 3, "min": 0, "max": 100})}}
    RETURN_TYPES = ("INT",)
    OUTPUT_IS_LIST = (True,)
    FUNCTION = "run"
    CATEGORY = "tests"

    def run(self, count):
        return (list(range(count)),)


class TestListSum:
    """Takes a whole list at once (INPUT_IS_LIST)."""
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"values": ("INT", {})}}
    RETURN_TYPES = ("INT",)
    INPUT_IS_LIST = True
    FUNCTION = "run"
    CATEGORY = "tests"

    def run(self, values):
        return (sum(values),)


class TestLazySwitch:
    """Evaluates only the branch its `choose_a` says."""
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"choose_a": ("BOOLEAN", {"default": True}),
                             "a": ("INT", {"lazy": True}), "b": ("INT", {"lazy": True})}}
    RETURN_TYPES = ("INT",)
    FUNCTION = "run"
    CATEGORY = "tests"

    def check_lazy_status(self, choose_a, a=None, b=None):
        if choose_a:
            return ["a"] if a is None else []
        return ["b"] if b is None else []

    def run(self, choose_a, a=None, b=None):
        return (a if choose_a else b,)


class TestFail:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT", {}), "message": ("STRING", {"default": "boom"})}}
    RETURN_TYPES = ("INT",)
    FUNCTION = "run"
    CATEGORY = "tests"

    def run(self, value, message):
        raise ValueError(message)


class TestSlow:
    """Loops `steps` times, reporting progress and honouring interrupts each step."""
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT", {}), "steps": ("INT", {"default": 10, "min": 1, "max": 10000}),
                             "delay": ("FLOAT", {"default": 0.05, "min": 0, "max": 10})}}
    RETURN_TYPES = ("INT",)
    FUNCTION = "run"
    CATEGORY = "tests"

    def run(self, value, steps, delay):
        bar = context.ProgressBar(steps)
        for _ in range(steps):
            context.check_interrupted()
            time.sleep(delay)
            bar.update(1)
        return (value,)


class TestValidated:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT", {})}}
    RETURN_TYPES = ("INT",)
    FUNCTION = "run"
    CATEGORY = "tests"

    @classmethod
    def VALIDATE_INPUTS(cls, value):
        return True if value % 2 == 0 else f"{value} is odd"

    def run(self, value):
        return (value,)


class TestAlwaysChanged:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT", {})}, "hidden": {"unique_id": "UNIQUE_ID"}}
    RETURN_TYPES = ("INT",)
    FUNCTION = "run"
    CATEGORY = "tests"

    @classmethod
    def IS_CHANGED(cls, value):
        return float("nan")

    def run(self, value, unique_id):
        _record("TestAlwaysChanged", unique_id)
        return (value,)


class TestHidden:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {}, "hidden": {"prompt": "PROMPT", "extra": "EXTRA_PNGINFO", "uid": "UNIQUE_ID"}}
    RETURN_TYPES = ()
    FUNCTION = "run"
    OUTPUT_NODE = True
    CATEGORY = "tests"

    def run(self, prompt, extra, uid):
        return {"ui": {"uid": [uid], "nodes": sorted(prompt), "extra": [extra]}}


class TestApiKey:
    """Shows the length of the API key the prompt's extra_data gave it (a secret: the key itself is not shown)."""
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {}, "hidden": {"key": "API_KEY_COMFY_ORG"}}
    RETURN_TYPES = ()
    FUNCTION = "run"
    OUTPUT_NODE = True
    CATEGORY = "tests"

    def run(self, key):
        return {"ui": {"key_length": [len(key or "")]}}


class TestExpandDouble:
    """Expands into a subgraph: value + value through TestAdd, plus an output node inside the subgraph."""
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT", {})}, "hidden": {"unique_id": "UNIQUE_ID"}}
    RETURN_TYPES = ("INT",)
    FUNCTION = "run"
    CATEGORY = "tests"

    def run(self, value, unique_id):
        add, report = f"{unique_id}.add", f"{unique_id}.report"
        return {"result": ([add, 0],), "expand": {
            add: {"class_type": "TestAdd", "inputs": {"a": value, "b": value}},
            report: {"class_type": "TestOutput", "inputs": {"value": [add, 0]}},
        }}


NODE_CLASS_MAPPINGS = {cls.__name__: cls for cls in (
    TestConstant, TestAdd, TestOutput, TestListOutput, TestListSum, TestLazySwitch, TestFail, TestSlow,
    TestValidated, TestAlwaysChanged, TestHidden, TestApiKey, TestExpandDouble)}
NODE_DISPLAY_NAME_MAPPINGS = {"TestAdd": "Add (test)"}
