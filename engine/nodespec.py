"""Reading a node class's declaration (ComfyUI's class-attribute protocol) in one place.

A node class declares `INPUT_TYPES()` -> {"required"|"optional"|"hidden": {name: (type, options?)}},
`RETURN_TYPES`, optional `RETURN_NAMES`, `OUTPUT_IS_LIST`, `INPUT_IS_LIST`, `OUTPUT_NODE`, `FUNCTION`,
`VALIDATE_INPUTS`, `IS_CHANGED`, `check_lazy_status`. Validation, execution and /object_info all read it here.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import inspect
from typing import Any

from .graph import link_target


@dataclasses.dataclass(frozen=True)
class InputSpec:
    name: str
    type: Any  # str ("INT", "MODEL", "A,B", "*") or a list of combo values
    category: str  # "required" | "optional" | "hidden"
    options: dict

    @property
    def lazy(self) -> bool:
        return bool(self.options.get("lazy"))

    @property
    def is_combo(self) -> bool:
        """A combo with its choices declared (a "COMBO" without "options" takes any value: the frontend fetches
        the choices, as for LoadImageOutput, and the node validates them)."""
        return isinstance(self.type, (list, tuple)) or (self.type == "COMBO" and "options" in self.options)

    @property
    def combo_values(self) -> list:
        if isinstance(self.type, (list, tuple)):
            return list(self.type)
        return list(self.options.get("options", []))

    def config(self) -> list:
        """ComfyUI's `input_config` echo in validation errors: [type, options]."""
        return [self.type, self.options]


def input_types(cls) -> dict:
    types = cls.INPUT_TYPES()
    if not isinstance(types, dict):
        raise TypeError(f"{cls.__name__}.INPUT_TYPES() must return a dict")
    return types


def input_specs(cls, types: dict | None = None) -> dict[str, InputSpec]:
    """Every declared input by name (required first, then optional, then hidden)."""
    types = input_types(cls) if types is None else types
    specs: dict[str, InputSpec] = {}
    for category in ("required", "optional", "hidden"):
        for name, declaration in (types.get(category) or {}).items():
            if category == "hidden":
                specs[name] = InputSpec(name, declaration, category, {})
                continue
            if isinstance(declaration, (list, tuple)) and declaration:
                input_type = declaration[0]
                options = declaration[1] if len(declaration) > 1 and isinstance(declaration[1], dict) else {}
            else:
                input_type, options = declaration, {}
            specs[name] = InputSpec(name, input_type, category, dict(options))
    return specs


def return_types(cls) -> tuple:
    return tuple(getattr(cls, "RETURN_TYPES", ()))


def output_is_list(cls) -> tuple[bool, ...]:
    flags = getattr(cls, "OUTPUT_IS_LIST", None)
    n = len(return_types(cls))
    return tuple(flags) if flags is not None else (False,) * n


def is_output_node(cls) -> bool:
    return getattr(cls, "OUTPUT_NODE", False) is True


def function_args(func) -> tuple[set[str], bool]:
    """(named parameters, accepts **kwargs) of a callable."""
    spec = inspect.getfullargspec(func)
    return set(spec.args) | set(spec.kwonlyargs), spec.varkw is not None


def types_compatible(received: Any, expected: Any) -> bool:
    """Whether an output of type `received` may feed an input of type `expected` (ComfyUI's rules)."""
    if isinstance(expected, (list, tuple)):
        # A combo input fed by a link: any list-typed or COMBO output, or a wildcard.
        return received in ("*", "COMBO") or isinstance(received, (list, tuple))
    if not isinstance(received, str) or not isinstance(expected, str):
        return received == expected
    if received == expected or "*" in (received, expected):
        return True
    received_set = {t.strip() for t in received.split(",")}
    expected_set = {t.strip() for t in expected.split(",")}
    return bool(received_set & expected_set)


def hook_call(cls, name: str, inputs: dict, specs: dict[str, InputSpec], **named):
    """Call `IS_CHANGED` or `VALIDATE_INPUTS` as ComfyUI does: on the class, with each declared constant input's
    value and None for each linked input (its value does not exist yet), limited to the parameters the hook names
    unless it takes **kwargs; `named` values go to the parameters named so. An async hook is awaited."""
    hook = getattr(cls, name)
    names, any_kwargs = function_args(hook)
    args = {key: None if link_target(value) is not None else value for key, value in inputs.items()
            if (key in specs or link_target(value) is not None) and (any_kwargs or key in names)}
    args.update({key: value for key, value in named.items() if key in names})
    return settle(hook(**args))


def settle(value):
    """`value`, or what it resolves to when it is awaitable (run on a private event loop; a synchronous caller may
    itself run inside a loop, e.g. the app factory called from async code)."""
    if not inspect.isawaitable(value):
        return value

    async def wait():
        return await value

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(wait())
    with concurrent.futures.ThreadPoolExecutor(1) as thread:  # a running loop cannot be blocked on from inside
        return thread.submit(asyncio.run, wait()).result()
