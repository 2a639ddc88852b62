"""`comfy_api.latest.io`: ComfyUI's V3 node API. A node subclasses ComfyNode and describes itself once, in
`define_schema()`; ComfyNode turns that schema into the class-attribute protocol every node runs by (INPUT_TYPES,
RETURN_TYPES, FUNCTION, VALIDATE_INPUTS, ...), so the engine runs V3 nodes without knowing about them."""
from __future__ import annotations

import copy
import dataclasses
import inspect
from collections import Counter
from enum import Enum
from typing import Any, Callable

import torch

from engine.graph import ExecutionBlocker


class FolderType(str, Enum):
    input = "input"
    output = "output"
    temp = "temp"


class UploadType(str, Enum):
    image = "image_upload"
    audio = "audio_upload"
    video = "video_upload"
    model = "file_upload"


class NumberDisplay(str, Enum):
    number = "number"
    slider = "slider"


def _pruned(**entries) -> dict:
    """The entries that are set: ComfyUI leaves None options out of a declaration (False stays)."""
    return {key: value for key, value in entries.items() if value is not None}


def _plain(value):
    return value.value if isinstance(value, Enum) else value


class RemoteOptions:
    """Combo choices the frontend fetches from a route."""

    def __init__(self, route: str, refresh_button: bool, control_after_refresh: str = "first",
                 timeout: int | None = None, max_retries: int | None = None, refresh: int | None = None):
        self.route = route
        self.refresh_button = refresh_button
        self.control_after_refresh = control_after_refresh
        self.timeout = timeout
        self.max_retries = max_retries
        self.refresh = refresh

    def as_dict(self) -> dict:
        return _pruned(route=self.route, refresh_button=self.refresh_button,
                       control_after_refresh=self.control_after_refresh, timeout=self.timeout,
                       max_retries=self.max_retries, refresh=self.refresh)


# -- inputs and outputs -----------------------------------------------------------------------------------

class _Socket:
    """An input or output of some ComfyType; `Parent` is that type (set when the type is declared)."""
    Parent: type | None = None

    @property
    def io_type(self):
        return self.Parent.io_type

    @property
    def Type(self):
        return self.Parent.Type


class Input(_Socket):
    def __init__(self, id: str, display_name: str | None = None, optional: bool = False, tooltip: str | None = None,
                 lazy: bool | None = None, extra_dict: dict | None = None):
        self.id = id
        self.display_name = display_name
        self.optional = optional
        self.tooltip = tooltip
        self.lazy = lazy
        self.extra_dict = extra_dict if extra_dict is not None else {}

    def as_dict(self) -> dict:
        return _pruned(display_name=self.display_name, optional=self.optional, tooltip=self.tooltip,
                       lazy=self.lazy) | _pruned(**self.extra_dict)

    def get_io_type(self):
        return self.io_type


class WidgetInput(Input):
    """An input the frontend may show as a widget."""

    def __init__(self, id: str, display_name: str | None = None, optional: bool = False, tooltip: str | None = None,
                 lazy: bool | None = None, default: Any = None, socketless: bool | None = None,
                 widget_type: str | None = None, force_input: bool | None = None, extra_dict: dict | None = None):
        super().__init__(id, display_name, optional, tooltip, lazy, extra_dict)
        self.default = default
        self.socketless = socketless
        self.widget_type = widget_type
        self.force_input = force_input

    def as_dict(self) -> dict:
        return super().as_dict() | _pruned(default=self.default, socketless=self.socketless,
                                           widgetType=self.widget_type, forceInput=self.force_input)

    def get_io_type(self):
        return self.widget_type if self.widget_type is not None else super().get_io_type()


class Output(_Socket):
    def __init__(self, id: str | None = None, display_name: str | None = None, tooltip: str | None = None,
                 is_output_list: bool = False):
        self.id = id
        self.display_name = display_name
        self.tooltip = tooltip
        self.is_output_list = is_output_list

    def as_dict(self) -> dict:
        return _pruned(display_name=self.display_name, tooltip=self.tooltip, is_output_list=self.is_output_list)

    def get_io_type(self):
        return self.io_type


# -- types ------------------------------------------------------------------------------------------------

class _ComfyType:
    Type = Any
    io_type: str | None = None


class ComfyTypeI(_ComfyType):
    """A type nodes only take."""

    class Input(Input):
        pass


class ComfyTypeIO(ComfyTypeI):
    """A type nodes take and give."""

    class Output(Output):
        pass


def comfytype(io_type: str):
    """Class decorator declaring a ComfyType named `io_type`, with its own Input / Output classes."""

    def declare(cls):
        if not issubclass(cls, _ComfyType):
            cls = type(cls.__name__, (cls, ComfyTypeIO), {"__module__": cls.__module__,
                                                           "__qualname__": cls.__qualname__, "__doc__": cls.__doc__})
        cls.io_type = io_type
        for role in ("Input", "Output"):
            socket = getattr(cls, role, None)
            if socket is not None:  # a subclass per type: binding Parent must leave the inherited class alone
                setattr(cls, role, type(socket.__name__, (socket,), {
                    "Parent": cls, "__module__": cls.__module__, "__qualname__": f"{cls.__qualname__}.{role}"}))
        return cls

    return declare


def Custom(io_type: str) -> type[ComfyTypeIO]:
    """A type for a custom io_type, taken and given like any other."""
    return comfytype(io_type)(type(io_type, (ComfyTypeIO,), {"__module__": __name__}))


@comfytype("BOOLEAN")
class Boolean(ComfyTypeIO):
    Type = bool

    class Input(WidgetInput):
        def __init__(self, id: str, display_name: str | None = None, optional: bool = False,
                     tooltip: str | None = None, lazy: bool | None = None, default: bool | None = None,
                     label_on: str | None = None, label_off: str | None = None, socketless: bool | None = None,
                     force_input: bool | None = None):
            super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, None, force_input)
            self.label_on = label_on
            self.label_off = label_off

        def as_dict(self) -> dict:
            return super().as_dict() | _pruned(label_on=self.label_on, label_off=self.label_off)


@comfytype("INT")
class Int(ComfyTypeIO):
    Type = int

    class Input(WidgetInput):
        def __init__(self, id: str, display_name: str | None = None, optional: bool = False,
                     tooltip: str | None = None, lazy: bool | None = None, default: int | None = None,
                     min: int | None = None, max: int | None = None, step: int | None = None,
                     control_after_generate: bool | None = None, display_mode: NumberDisplay | None = None,
                     socketless: bool | None = None, force_input: bool | None = None):
            super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, None, force_input)
            self.min = min
            self.max = max
            self.step = step
            self.control_after_generate = control_after_generate
            self.display_mode = display_mode

        def as_dict(self) -> dict:
            return super().as_dict() | _pruned(min=self.min, max=self.max, step=self.step,
                                               control_after_generate=self.control_after_generate,
                                               display=_plain(self.display_mode))


@comfytype("FLOAT")
class Float(ComfyTypeIO):
    Type = float

    class Input(WidgetInput):
        def __init__(self, id: str, display_name: str | None = None, optional: bool = False,
                     tooltip: str | None = None, lazy: bool | None = None, default: float | None = None,
                     min: float | None = None, max: float | None = None, step: float | None = None,
                     round: float | None = None, display_mode: NumberDisplay | None = None,
                     socketless: bool | None = None, force_input: bool | None = None):
            super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, None, force_input)
            self.min = min
            self.max = max
            self.step = step
            self.round = round
            self.display_mode = display_mode

        def as_dict(self) -> dict:
            return super().as_dict() | _pruned(min=self.min, max=self.max, step=self.step, round=self.round,
                                               display=_plain(self.display_mode))


@comfytype("STRING")
class String(ComfyTypeIO):
    Type = str

    class Input(WidgetInput):
        def __init__(self, id: str, display_name: str | None = None, optional: bool = False,
                     tooltip: str | None = None, lazy: bool | None = None, multiline: bool = False,
                     placeholder: str | None = None, default: str | None = None,
                     dynamic_prompts: bool | None = None, socketless: bool | None = None,
                     force_input: bool | None = None):
            super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, None, force_input)
            self.multiline = multiline
            self.placeholder = placeholder
            self.dynamic_prompts = dynamic_prompts

        def as_dict(self) -> dict:
            return super().as_dict() | _pruned(multiline=self.multiline, placeholder=self.placeholder,
                                               dynamicPrompts=self.dynamic_prompts)


@comfytype("COMBO")
class Combo(ComfyTypeIO):
    Type = str

    class Input(WidgetInput):
        """A dropdown; `options` may be an Enum class (its values are the choices)."""

        def __init__(self, id: str, options: list | type[Enum] | None = None, display_name: str | None = None,
                     optional: bool = False, tooltip: str | None = None, lazy: bool | None = None,
                     default: Any = None, control_after_generate: bool | None = None,
                     upload: UploadType | None = None, image_folder: FolderType | None = None,
                     remote: RemoteOptions | None = None, socketless: bool | None = None):
            if isinstance(options, type) and issubclass(options, Enum):
                options = [member.value for member in options]
            super().__init__(id, display_name, optional, tooltip, lazy, _plain(default), socketless)
            self.multiselect = False
            self.options = options
            self.control_after_generate = control_after_generate
            self.upload = upload
            self.image_folder = image_folder
            self.remote = remote

        def as_dict(self) -> dict:
            upload = {_plain(self.upload): True} if self.upload is not None else {}
            return super().as_dict() | _pruned(
                multiselect=self.multiselect, options=self.options, control_after_generate=self.control_after_generate,
                **upload, image_folder=_plain(self.image_folder),
                remote=self.remote.as_dict() if self.remote else None)

    class Output(Output):
        """A combo output: its type is its list of choices."""

        def __init__(self, id: str | None = None, display_name: str | None = None, options: list | None = None,
                     tooltip: str | None = None, is_output_list: bool = False):
            super().__init__(id, display_name, tooltip, is_output_list)
            self.options = options if options is not None else []

        @property
        def io_type(self):
            return self.options


@comfytype("COMBO")
class MultiCombo(ComfyTypeI):
    Type = list

    class Input(Combo.Input):
        def __init__(self, id: str, options: list, display_name: str | None = None, optional: bool = False,
                     tooltip: str | None = None, lazy: bool | None = None, default: list | None = None,
                     placeholder: str | None = None, chip: bool | None = None,
                     control_after_generate: bool | None = None, socketless: bool | None = None):
            super().__init__(id, options, display_name, optional, tooltip, lazy, default, control_after_generate,
                             socketless=socketless)
            self.multiselect = True
            self.placeholder = placeholder
            self.chip = chip

        def as_dict(self) -> dict:
            return super().as_dict() | _pruned(multi_select=self.multiselect, placeholder=self.placeholder,
                                               chip=self.chip)


@comfytype("WEBCAM")
class Webcam(ComfyTypeIO):
    Type = str

    class Input(WidgetInput):
        def __init__(self, id: str, display_name: str | None = None, optional: bool = False,
                     tooltip: str | None = None, lazy: bool | None = None, default: str | None = None,
                     socketless: bool | None = None):
            super().__init__(id, display_name, optional, tooltip, lazy, default, socketless)


@comfytype("COMFY_MULTITYPED_V3")
class MultiType:
    Type = Any

    class Input(Input):
        """An input taking any of several types; given an Input as `id`, it keeps that input's widget and
        options."""

        def __init__(self, id: str | Input, types: list, display_name: str | None = None, optional: bool = False,
                     tooltip: str | None = None, lazy: bool | None = None, extra_dict: dict | None = None):
            self.input_override = None
            if isinstance(id, Input):
                self.input_override = copy.copy(id)
                optional = id.optional or optional
                tooltip = id.tooltip if id.tooltip is not None else tooltip
                display_name = id.display_name if id.display_name is not None else display_name
                lazy = id.lazy if id.lazy is not None else lazy
                if isinstance(self.input_override, WidgetInput):  # its widget stays that of its own type
                    self.input_override.widget_type = self.input_override.get_io_type()
                id = id.id
            super().__init__(id, display_name, optional, tooltip, lazy, extra_dict)
            self.io_types = types

        def get_io_type(self):
            names = [kind.io_type for kind in self.io_types]  # ComfyType classes or instances
            if self.input_override is not None:
                names.insert(0, self.input_override.get_io_type())
            return ",".join(dict.fromkeys(names))

        def as_dict(self) -> dict:
            own = super().as_dict()
            return self.input_override.as_dict() | own if self.input_override is not None else own


def _declare(name: str, io_type: str, value_type: Any = Any) -> type[ComfyTypeIO]:
    """A type with plain sockets (no widget options)."""
    return comfytype(io_type)(type(name, (ComfyTypeIO,), {"Type": value_type, "__module__": __name__}))


Image = _declare("Image", "IMAGE", torch.Tensor)
WanCameraEmbedding = _declare("WanCameraEmbedding", "WAN_CAMERA_EMBEDDING", torch.Tensor)
Mask = _declare("Mask", "MASK", torch.Tensor)
Latent = _declare("Latent", "LATENT", dict)
Conditioning = _declare("Conditioning", "CONDITIONING", list)
Sampler = _declare("Sampler", "SAMPLER")
Sigmas = _declare("Sigmas", "SIGMAS", torch.Tensor)
Noise = _declare("Noise", "NOISE")
Guider = _declare("Guider", "GUIDER")
Clip = _declare("Clip", "CLIP")
ControlNet = _declare("ControlNet", "CONTROL_NET")
Vae = _declare("Vae", "VAE")
Model = _declare("Model", "MODEL")
ClipVision = _declare("ClipVision", "CLIP_VISION")
ClipVisionOutput = _declare("ClipVisionOutput", "CLIP_VISION_OUTPUT")
StyleModel = _declare("StyleModel", "STYLE_MODEL")
Gligen = _declare("Gligen", "GLIGEN")
UpscaleModel = _declare("UpscaleModel", "UPSCALE_MODEL")
Audio = _declare("Audio", "AUDIO", dict)
Video = _declare("Video", "VIDEO")
SVG = _declare("SVG", "SVG")
LoraModel = _declare("LoraModel", "LORA_MODEL", dict)
LossMap = _declare("LossMap", "LOSS_MAP", dict)
Voxel = _declare("Voxel", "VOXEL")
Mesh = _declare("Mesh", "MESH")
Hooks = _declare("Hooks", "HOOKS")
HookKeyframes = _declare("HookKeyframes", "HOOK_KEYFRAMES")
TimestepsRange = _declare("TimestepsRange", "TIMESTEPS_RANGE", tuple)
LatentOperation = _declare("LatentOperation", "LATENT_OPERATION", Callable)
FlowControl = _declare("FlowControl", "FLOW_CONTROL", tuple)
Accumulation = _declare("Accumulation", "ACCUMULATION", dict)
Load3DCamera = _declare("Load3DCamera", "LOAD3D_CAMERA", dict)
Load3D = _declare("Load3D", "LOAD_3D", dict)
Load3DAnimation = _declare("Load3DAnimation", "LOAD_3D_ANIMATION", dict)
Photomaker = _declare("Photomaker", "PHOTOMAKER")
Point = _declare("Point", "POINT")
FaceAnalysis = _declare("FaceAnalysis", "FACE_ANALYSIS")
BBOX = _declare("BBOX", "BBOX")
SEGS = _declare("SEGS", "SEGS")
AnyType = _declare("AnyType", "*")
MODEL_PATCH = _declare("MODEL_PATCH", "MODEL_PATCH")
AudioEncoder = _declare("AudioEncoder", "AUDIO_ENCODER")
AudioEncoderOutput = _declare("AudioEncoderOutput", "AUDIO_ENCODER_OUTPUT")


# -- hidden values ----------------------------------------------------------------------------------------

class Hidden(str, Enum):
    """Values a node may ask for beside its inputs (it reads them from `cls.hidden`)."""
    unique_id = "UNIQUE_ID"
    prompt = "PROMPT"
    extra_pnginfo = "EXTRA_PNGINFO"
    dynprompt = "DYNPROMPT"
    auth_token_comfy_org = "AUTH_TOKEN_COMFY_ORG"
    api_key_comfy_org = "API_KEY_COMFY_ORG"


class HiddenHolder:
    """`cls.hidden` of a running node: each hidden value its schema asked for, None for the others."""

    def __init__(self, unique_id: str | None = None, prompt: Any = None, extra_pnginfo: Any = None,
                 dynprompt: Any = None, auth_token_comfy_org: str | None = None,
                 api_key_comfy_org: str | None = None, **kwargs):
        self.unique_id = unique_id
        self.prompt = prompt
        self.extra_pnginfo = extra_pnginfo
        self.dynprompt = dynprompt
        self.auth_token_comfy_org = auth_token_comfy_org
        self.api_key_comfy_org = api_key_comfy_org

    def __getattr__(self, key: str):
        return None

    @classmethod
    def from_dict(cls, values: dict | None) -> HiddenHolder:
        """From {Hidden (or its value): value}."""
        return cls(**{Hidden(key).name: value for key, value in (values or {}).items()})


# -- the schema -------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Schema:
    node_id: str
    display_name: str | None = None
    category: str = "sd"
    inputs: list[Input] | None = None
    outputs: list[Output] | None = None
    hidden: list[Hidden] | None = None
    description: str = ""
    is_input_list: bool = False
    is_output_node: bool = False
    is_deprecated: bool = False
    is_experimental: bool = False
    is_api_node: bool = False
    not_idempotent: bool = False
    enable_expand: bool = False

    def validate(self) -> None:
        """Input ids and output ids must be unique, among themselves and between each other."""
        input_ids = [i.id for i in self.inputs or ()]
        output_ids = [o.id for o in self.outputs or ()]
        issues = []
        for what, ids in (("Input", input_ids), ("Output", output_ids)):
            repeated = [name for name, count in Counter(ids).items() if count > 1]
            if repeated:
                issues.append(f"{what} ids must be unique, but {repeated} are not.")
        shared = set(input_ids) & set(output_ids)
        if shared:
            issues.append(f"Ids must be unique between inputs and outputs, but {shared} are not.")
        if issues:
            raise ValueError("\n".join(issues))

    def finalize(self) -> None:
        """Add the hidden values API nodes and output nodes get anyway, and ids for outputs without one."""
        wanted = list(self.hidden or ())
        if self.is_api_node:
            wanted += [Hidden.auth_token_comfy_org, Hidden.api_key_comfy_org]
        if self.is_output_node:
            wanted += [Hidden.prompt, Hidden.extra_pnginfo]
        if wanted:
            self.hidden = list(dict.fromkeys(wanted))
        for index, output in enumerate(self.outputs or ()):
            if output.id is None:
                output.id = f"_{index}_{output.io_type}_"

    def v1_inputs(self) -> dict:
        """The required and optional inputs as a V1 INPUT_TYPES declares them."""
        declared: dict = {"required": {}}
        for item in self.inputs or ():
            options = item.as_dict()
            options.pop("optional", None)  # V1 says it by the section
            declared.setdefault("optional" if item.optional else "required", {})[item.id] = (item.get_io_type(),
                                                                                             options)
        return declared

    def hidden_keys(self) -> dict[str, Hidden]:
        """The INPUT_TYPES key each hidden value travels under: its name, or its value where an input already
        has that name (the engine keys inputs and hidden values alike by name)."""
        visible = {item.id for item in self.inputs or ()}
        return {(hidden.value if hidden.name in visible else hidden.name): hidden for hidden in self.hidden or ()}


# -- nodes ------------------------------------------------------------------------------------------------

class _UIOutput:
    """What a node shows in the frontend; `as_dict()` is the node's `ui` entry."""

    def as_dict(self) -> dict:
        raise NotImplementedError


class NodeOutput:
    """What `execute()` returns: the output values, and optionally `ui` (a dict or ui.* object), a subgraph to
    `expand` into, or `block_execution` (a message) to stop the nodes that use the outputs."""

    def __init__(self, *args: Any, ui: _UIOutput | dict | None = None, expand: dict | None = None,
                 block_execution: str | None = None):
        self.args = args
        self.ui = ui
        self.expand = expand
        self.block_execution = block_execution

    @property
    def result(self):
        return self.args if self.args else None

    @classmethod
    def from_dict(cls, data: dict) -> NodeOutput:
        result = data.get("result", ())
        if isinstance(result, ExecutionBlocker):
            return cls(block_execution=result.message)
        return cls(*result, ui=data.get("ui"), expand=data.get("expand"))

    def __getitem__(self, index):
        return self.args[index]

    def v1(self) -> dict:
        """As a V1 node function returns it."""
        out = {"result": self.args if self.block_execution is None else ExecutionBlocker(self.block_execution)}
        if self.ui is not None:
            out["ui"] = self.ui if isinstance(self.ui, dict) else self.ui.as_dict()
        if self.expand is not None:
            out["expand"] = self.expand
        return out


class _FromSchema:
    """A V1 class attribute, read from the node's schema."""

    def __init__(self, read: Callable[[Schema], Any]):
        self.read = read

    def __get__(self, instance, owner):
        return self.read(owner._schema())


class _Hook:
    """A V1 hook (VALIDATE_INPUTS, IS_CHANGED) standing for a V3 method, present only where a node overrides that
    method: the engine calls any hook a class has."""

    def __init__(self, method: str):
        self.method = method

    def __get__(self, instance, owner):
        if not _overrides(owner, self.method):
            raise AttributeError(self.method)
        return getattr(owner, self.method)


def _overrides(cls, name: str) -> bool:
    for klass in cls.__mro__:
        if klass is ComfyNode:
            return False
        if name in klass.__dict__:
            return True
    return False


class ComfyNode:
    """Base of V3 nodes: override `define_schema` and `execute` (classmethods), optionally `validate_inputs`,
    `fingerprint_inputs` and `check_lazy_status`."""

    hidden = HiddenHolder()  # execute() and check_lazy_status() see a subclass holding the call's values

    @classmethod
    def define_schema(cls) -> Schema:
        raise NotImplementedError

    @classmethod
    def execute(cls, **kwargs) -> NodeOutput:
        raise NotImplementedError

    @classmethod
    def validate_inputs(cls, **kwargs) -> bool | str:
        """True, or why the inputs are not valid (V1's VALIDATE_INPUTS)."""
        raise NotImplementedError

    @classmethod
    def fingerprint_inputs(cls, **kwargs) -> Any:
        """A value that changes when the node's result would (V1's IS_CHANGED)."""
        raise NotImplementedError

    # -- the V1 protocol ----------------------------------------------------------------------------------

    FUNCTION = "EXECUTE_NORMALIZED"
    VALIDATE_INPUTS = _Hook("validate_inputs")
    IS_CHANGED = _Hook("fingerprint_inputs")
    RETURN_TYPES = _FromSchema(lambda schema: tuple(o.io_type for o in schema.outputs or ()))
    RETURN_NAMES = _FromSchema(lambda schema: tuple(o.display_name or o.io_type for o in schema.outputs or ()))
    OUTPUT_IS_LIST = _FromSchema(lambda schema: tuple(o.is_output_list for o in schema.outputs or ()))
    OUTPUT_TOOLTIPS = _FromSchema(lambda schema: [o.tooltip or None for o in schema.outputs or ()])
    OUTPUT_NODE = _FromSchema(lambda schema: schema.is_output_node)
    INPUT_IS_LIST = _FromSchema(lambda schema: schema.is_input_list)
    NOT_IDEMPOTENT = _FromSchema(lambda schema: schema.not_idempotent)
    CATEGORY = _FromSchema(lambda schema: schema.category)
    DESCRIPTION = _FromSchema(lambda schema: schema.description)
    DEPRECATED = _FromSchema(lambda schema: schema.is_deprecated)
    EXPERIMENTAL = _FromSchema(lambda schema: schema.is_experimental)
    API_NODE = _FromSchema(lambda schema: schema.is_api_node)

    def __init__(self):
        type(self).VALIDATE_CLASS()
        if callable(getattr(type(self), "check_lazy_status", None)):
            # the engine asks the instance; the hook itself must not get the hidden values as inputs
            self.check_lazy_status = self._check_lazy_status

    @classmethod
    def VALIDATE_CLASS(cls) -> None:
        for method in ("define_schema", "execute"):
            if not _overrides(cls, method):
                raise TypeError(f"node class {cls.__name__} defines no {method} function")

    @classmethod
    def FINALIZE_SCHEMA(cls) -> Schema:
        schema = cls.define_schema()
        schema.finalize()
        return schema

    @classmethod
    def GET_SCHEMA(cls) -> Schema:
        """The finalized, checked schema; the V1 attributes read the one kept by the last call."""
        cls.VALIDATE_CLASS()
        schema = cls.FINALIZE_SCHEMA()
        schema.validate()
        cls._kept_schema = schema
        return schema

    @classmethod
    def _schema(cls) -> Schema:
        kept = cls.__dict__.get("_kept_schema")  # a subclass keeps its own
        return kept if kept is not None else cls.GET_SCHEMA()

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        # built afresh each time, as V1 nodes do: choices may list files that come and go
        schema = cls.FINALIZE_SCHEMA()
        declared = schema.v1_inputs()
        hidden = schema.hidden_keys()
        if hidden:
            declared["hidden"] = {key: value.value for key, value in hidden.items()}
        return declared

    @classmethod
    def GET_NODE_INFO_V1(cls) -> dict:
        """The node's /object_info entry, as ComfyUI describes V3 nodes (every flag present, hidden values as
        one-element lists, the schema's display name even when None)."""
        schema = cls.GET_SCHEMA()
        declared = schema.v1_inputs()
        if schema.hidden:
            declared["hidden"] = {hidden.name: (hidden.value,) for hidden in schema.hidden}
        return {
            "input": declared,
            "input_order": {section: list(inputs) for section, inputs in declared.items()},
            "output": list(cls.RETURN_TYPES),
            "output_is_list": list(cls.OUTPUT_IS_LIST),
            "output_name": list(cls.RETURN_NAMES),
            "output_tooltips": cls.OUTPUT_TOOLTIPS,
            "name": schema.node_id,
            "display_name": schema.display_name,
            "description": schema.description,
            "python_module": getattr(cls, "RELATIVE_PYTHON_MODULE", "nodes"),
            "category": schema.category,
            "output_node": schema.is_output_node,
            "deprecated": schema.is_deprecated,
            "experimental": schema.is_experimental,
            "api_node": schema.is_api_node,
        }

    # -- running ------------------------------------------------------------------------------------------

    @classmethod
    def _with_hidden(cls, inputs: dict) -> type[ComfyNode]:
        """A subclass whose `hidden` holds the hidden values the engine passed among `inputs` (taken out of
        them); a subclass per call, so that concurrent runs do not share them."""
        values = {hidden: inputs.pop(key) for key, hidden in cls._schema().hidden_keys().items() if key in inputs}
        if cls.INPUT_IS_LIST:  # every input came as a list, the hidden values too
            values = {hidden: value[0] for hidden, value in values.items()}
        return type(cls.__name__, (cls,), {"hidden": HiddenHolder.from_dict(values), "__module__": cls.__module__,
                                           "__qualname__": cls.__qualname__})

    @classmethod
    def _v1_result(cls, returned):
        """What execute() returned, as V1 node functions return it (a tuple, dict, ExecutionBlocker or None
        already is)."""
        expand = returned.expand if isinstance(returned, NodeOutput) else (
            returned.get("expand") if isinstance(returned, dict) else None)
        if expand is not None and not cls._schema().enable_expand:
            raise ValueError(f"node {cls.__name__} returned a subgraph to expand into, but its schema does not set "
                             "enable_expand=True")
        return returned.v1() if isinstance(returned, NodeOutput) else returned

    def EXECUTE_NORMALIZED(self, **inputs):
        returned = type(self)._with_hidden(inputs).execute(**inputs)
        if inspect.isawaitable(returned):
            return self._settled(returned)
        return type(self)._v1_result(returned)

    async def _settled(self, pending):
        return type(self)._v1_result(await pending)

    def _check_lazy_status(self, **inputs):
        return type(self)._with_hidden(inputs).check_lazy_status(**inputs)
