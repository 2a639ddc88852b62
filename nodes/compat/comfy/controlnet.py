"""`comfy.controlnet`: ControlNets, Control-LoRAs and T2I-Adapters (CONTROL_NET values) loaded by path, for custom
nodes; the classes are comfyd's."""
from __future__ import annotations

from engine.models.controlnet import ControlBase, ControlLora, ControlNet, T2IAdapter  # noqa: F401 (re-exported)
from nodes.controlnet import load_control_path


def load_controlnet(ckpt_path, model=None, model_options=None):
    """A hintless CONTROL_NET from the file at `ckpt_path`; `model`: the MODEL a diff ControlNet adds to."""
    return load_control_path(ckpt_path, diff_model=model)
