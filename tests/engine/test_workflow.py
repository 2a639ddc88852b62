"""UI-format workflow -> API prompt, on small hand-written graphs (one per frontend rule) and on templates.

The object_info entries below are written after ComfyUI's declarations of these nodes (input names, types,
order and the options that shape widgets: control_after_generate, image_upload, forceInput, dynamicPrompts).
"""
from __future__ import annotations

import json

import pytest

from engine.workflow import (UnknownNodeTypes, WorkflowError, expand_dynamic_prompt, is_ui_workflow,
                             to_api_prompt, widget_layout)
from server.frontend import installed_template_roots

SAMPLERS = [["euler", "dpmpp_2m", "uni_pc_bh2"], {}]
SCHEDULERS = [["normal", "karras", "simple"], {}]


def info(required: dict, optional: dict | None = None, display: str | None = None, order: dict | None = None):
    declared = {"required": required, **({"optional": optional} if optional else {})}
    return {"input": declared, "input_order": order or {k: list(v) for k, v in declared.items()},
            "display_name": display}


INT, FLOAT = ["INT", {"default": 0}], ["FLOAT", {"default": 1.0}]
INFO = {
    "CheckpointLoaderSimple": info({"ckpt_name": [["a.safetensors", "sd_xl_base_1.0.safetensors"], {}]},
                                   display="Load Checkpoint"),
    "CLIPTextEncode": info({"text": ["STRING", {"multiline": True, "dynamicPrompts": True}], "clip": ["CLIP"]}),
    "EmptyLatentImage": info({"width": ["INT", {"default": 512}], "height": ["INT", {"default": 512}],
                              "batch_size": ["INT", {"default": 1}]}),
    "KSampler": info({"model": ["MODEL"], "seed": ["INT", {"control_after_generate": True}], "steps": INT,
                      "cfg": FLOAT, "sampler_name": SAMPLERS, "scheduler": SCHEDULERS, "positive": ["CONDITIONING"],
                      "negative": ["CONDITIONING"], "latent_image": ["LATENT"], "denoise": FLOAT}),
    "KSamplerAdvanced": info({
        "model": ["MODEL"], "add_noise": [["enable", "disable"], {}],
        "noise_seed": ["INT", {"control_after_generate": True}], "steps": INT, "cfg": FLOAT, "sampler_name": SAMPLERS, "scheduler": SCHEDULERS, "positive": ["CONDITIONING"],
        "negative": ["CONDITIONING"], "latent_image": ["LATENT"], "start_at_step": INT, "end_at_step": INT,
        "return_with_leftover_noise": [["disable", "enable"], {}]}, display="KSampler (Advanced)"),
    "VAEDecode": info({"samples": ["LATENT"], "vae": ["VAE"]}),
    "SaveImage": info({"images": ["IMAGE"], "filename_prefix": ["STRING", {"default": "ComfyUI"}]}),
    "LoadImage": info({"image": [["x.png", "y.png"], {"image_upload": True}]}),
    "LatentUpscaleBy": info({"samples": ["LATENT"], "upscale_method": [["nearest-exact", "bilinear"], {}],
                             "scale_by": FLOAT}),
    "LoraLoader": info({"model": ["MODEL"], "clip": ["CLIP"], "lora_name": [["l.safetensors"], {}],
                        "strength_model": FLOAT, "strength_clip": FLOAT}),
    "PrimitiveInt": info({"value": ["INT", {"control_after_generate": True}]}),
}


# -- building UI graphs ---------------------------------------------------------------------------------------


def node(id, type, inputs=(), outputs=(), widgets=None, mode=0, **extra) -> dict:
    """A UI node; ``inputs`` are (name, type) or (name, type, True) for a widget input."""
    return {"id": id, "type": type, "mode": mode,
            "inputs": [{"name": i[0], "type": i[1], "link": None, **({"widget": {"name": i[0]}} if i[2:] else {})}
                       for i in inputs],
            "outputs": [{"name": t, "type": t, "links": []} for t in outputs],
            **({"widgets_values": widgets} if widgets is not None else {}), **extra}


def wire(nodes, links, start=1) -> list:
    """Links as (origin, slot, target, slot); sets the nodes' link fields. Subgraph ends are "in" / "out"."""
    by_id = {n["id"]: n for n in nodes}
    raw = []
    for i, (origin, o_slot, target, t_slot) in enumerate(links, start):
        origin_id = -10 if origin == "in" else origin
        target_id = -20 if target == "out" else target
        if target != "out":
            by_id[target]["inputs"][t_slot]["link"] = i
        if origin != "in":
            by_id[origin]["outputs"][o_slot]["links"].append(i)
        link_type = "*" if origin == "in" else by_id[origin]["outputs"][o_slot]["type"]
        raw.append({"id": i, "origin_id": origin_id, "origin_slot": o_slot, "target_id": target_id,
                    "target_slot": t_slot, "type": link_type})
    return raw


def workflow(*nodes, links=(), subgraphs=()) -> dict:
    # root links in the list form the frontend saves
    raw = [[l["id"], l["origin_id"], l["origin_slot"], l["target_id"], l["target_slot"], l["type"]]
           for l in wire(nodes, links)]
    return {"nodes": list(nodes), "links": raw, "version": 0.4,
            **({"definitions": {"subgraphs": list(subgraphs)}} if subgraphs else {})}


def subgraph(id, inputs, outputs, nodes, links, start=100) -> dict:
    return {"id": id, "name": id, "inputs": [{"name": n, "type": t} for n, t in inputs],
            "outputs": [{"name": n, "type": t} for n, t in outputs], "nodes": list(nodes),
            "links": wire(nodes, links, start)}


def convert(wf, object_info=INFO, **kwargs) -> dict:
    return {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in
            to_api_prompt(wf, object_info, **kwargs).items()}


def loader(id=1, **kw):
    return node(id, "CheckpointLoaderSimple", outputs=("MODEL", "CLIP", "VAE"), widgets=["a.safetensors"], **kw)


def latent(id=2, **kw):
    return node(id, "EmptyLatentImage", outputs=("LATENT",), widgets=[64, 32, 1], **kw)


def decode(id, **kw):
    return node(id, "VAEDecode", inputs=(("samples", "LATENT"), ("vae", "VAE")), outputs=("IMAGE",), **kw)


def save(id, **kw):
    return node(id, "SaveImage", inputs=(("images", "IMAGE"),), widgets=["out"], **kw)


# -- format detection -----------------------------------------------------------------------------------------


def test_is_ui_workflow_tells_the_two_formats_apart():
    assert is_ui_workflow(workflow(loader()))
    assert not is_ui_workflow({"1": {"class_type": "SaveImage", "inputs": {}}})
    assert not is_ui_workflow([])
    with pytest.raises(WorkflowError):
        to_api_prompt({"1": {"class_type": "SaveImage", "inputs": {}}}, INFO)


# -- widgets --------------------------------------------------------------------------------------------------


def test_widget_values_follow_input_order_and_skip_the_seed_control_value():
    sampler = node(3, "KSampler", inputs=(("model", "MODEL"), ("positive", "CONDITIONING"),
                                          ("negative", "CONDITIONING"), ("latent_image", "LATENT")),
                   outputs=("LATENT",), widgets=[42, "randomize", 7, 6.5, "dpmpp_2m", "karras", 0.5])
    text = node(4, "CLIPTextEncode", inputs=(("clip", "CLIP"),), outputs=("CONDITIONING",), widgets=["a cat"])
    out = convert(workflow(loader(), latent(), sampler, text, decode(5), save(6),
                           links=[(1, 0, 3, 0), (4, 0, 3, 1), (4, 0, 3, 2), (2, 0, 3, 3), (1, 1, 4, 0), (3, 0, 5, 0),
                                  (1, 2, 5, 1), (5, 0, 6, 0)]))
    assert out["3"]["inputs"] == {"seed": 42, "steps": 7, "cfg": 6.5, "sampler_name": "dpmpp_2m",
                                  "scheduler": "karras", "denoise": 0.5, "model": ["1", 0], "positive": ["4", 0],
                                  "negative": ["4", 0], "latent_image": ["2", 0]}
    assert out["2"]["inputs"] == {"width": 64, "height": 32, "batch_size": 1}
    assert out["1"] == {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "a.safetensors"}}
    assert out["6"]["inputs"] == {"filename_prefix": "out", "images": ["5", 0]}


def test_control_and_upload_helper_widgets():
    upload = {**INFO["LoadImage"], "input": {"required": {"image": [["x.png"], {"image_upload": True}]},
                                             "optional": {"note": ["STRING", {}]}}}
    assert [w.name for w in widget_layout(upload)] == ["image", "note", "upload"]  # input_order: upload last
    del upload["input_order"]
    assert [w.name for w in widget_layout(upload)] == ["image", "upload", "note"]  # after the required inputs
    custom = info({"seed": ["INT", {"control_after_generate": False}],
                   "count": ["INT", {"control_after_generate": True}], "noise_seed": ["INT", {}], "scale": ["FLOAT", {"control_after_generate": True}],
                   "pick": [["a", "b"], {"control_after_generate": True}], "model": ["MODEL"],
                   "forced": ["INT", {"forceInput": True}], "flag": ["BOOLEAN", {}]})
    assert [w.name for w in widget_layout(custom)] == [
        "seed", "count", "control_after_generate", "noise_seed", "control_after_generate", "scale",
        "control_after_generate", "pick", "control_after_generate", "control_filter_list", "flag"]
    out = convert(workflow(node(1, "Custom", widgets=[1, 2, "fixed", 3, "increment", 0.5, "fixed", "b", "fixed",
                                                      "", True]),
                           node(2, "LoadImage", outputs=("IMAGE", "MASK"), widgets=["y.png", "image"])),
                  {**INFO, "Custom": custom})
    assert out["1"]["inputs"] == {"seed": 1, "count": 2, "noise_seed": 3, "scale": 0.5, "pick": "b", "flag": True}
    assert out["2"]["inputs"] == {"image": "y.png"}


def test_named_values_missing_defaults_and_legacy_fixes():
    # Positional values win (as in the frontend); names are used when the count fits no layout.
    named = node(1, "EmptyLatentImage", outputs=("LATENT",), widgets=[8, 16],
                 widgets_values_named={"width": 128, "height": 256, "batch_size": 4})
    missing = node(2, "KSampler", widgets=[5, "fixed", 3])
    legacy = node(3, "KSampler", widgets=[5, True, 3, 2.0, "sample_euler", None, 1.0])
    out = convert(workflow(named, missing, legacy))
    assert out["1"]["inputs"] == {"width": 128, "height": 256, "batch_size": 4}
    assert out["2"]["inputs"] == {"seed": 5, "steps": 3, "cfg": 1.0, "sampler_name": "euler",
                                  "scheduler": "normal", "denoise": 1.0}  # defaults; a combo's is its first option
    assert out["3"]["inputs"]["sampler_name"] == "euler" and out["3"]["inputs"]["scheduler"] == "normal"


def test_values_of_legacy_force_inputs_are_dropped():
    forced = info({"a": ["INT", {}], "b": ["STRING", {"forceInput": True}], "c": ["INT", {}]})
    out = convert(workflow(node(1, "F", inputs=(("b", "STRING"),), widgets=[1, "", 3]),
                           node(2, "F", inputs=(("b", "STRING"),), widgets=[4, 6])), {"F": forced})
    assert out["1"]["inputs"] == {"a": 1, "c": 3}
    assert out["2"]["inputs"] == {"a": 4, "c": 6}


def test_list_values_are_wrapped_so_they_do_not_read_as_links():
    listy = info({"points": ["CURVE", {}]})
    out = convert(workflow(node(1, "L", widgets=[["2", 0]])), {"L": listy})
    assert out["1"]["inputs"] == {"points": {"__value__": ["2", 0]}}


def test_dynamic_prompts_pick_options_and_drop_comments():
    class Fixed:  # random.Random stand-in: always the same fraction
        def __init__(self, value): self.value = value
        def random(self): return self.value

    assert expand_dynamic_prompt("a {red|green|blue} {big|small} cat", Fixed(0.0)) == "a red big cat"
    assert expand_dynamic_prompt("a {red|green|blue} {big|small} cat", Fixed(0.99)) == "a blue small cat"
    assert expand_dynamic_prompt("{x {1|2}|y}", Fixed(0.0)) == "x 1"  # nested choices
    assert expand_dynamic_prompt("a \\{literal\\} b // gone\nc /* gone */d", Fixed(0.5)) == "a {literal} b \nc d"
    text = node(1, "CLIPTextEncode", inputs=(("clip", "CLIP"),), widgets=["{day|night} // note"])
    keep = node(2, "SaveImage", widgets=["{day|night}"])  # no dynamicPrompts: sent as it is
    out = convert(workflow(text, keep), rng=Fixed(0.9))
    assert out["1"]["inputs"]["text"] == "night " and out["2"]["inputs"]["filename_prefix"] == "{day|night}"


# -- frontend-only nodes ----------------------------------------------------------------------------------------


def test_reroutes_are_followed_and_notes_dropped():
    r1 = node(10, "Reroute", inputs=(("", "*"),), outputs=("*",))
    r2 = node(11, "Reroute", inputs=(("", "*"),), outputs=("*",))
    note = node(12, "Note", widgets=["hello"])
    md = node(13, "MarkdownNote", widgets=["# hi"])
    out = convert(workflow(latent(), r1, r2, note, md, decode(3), links=[(2, 0, 10, 0), (10, 0, 11, 0), (11, 0, 3, 0)]))
    assert set(out) == {"2", "3"}
    assert out["3"]["inputs"] == {"samples": ["2", 0]}


def test_primitive_node_value_is_written_into_the_widgets_it_feeds():
    prim = node(20, "PrimitiveNode", outputs=("INT",), widgets=[777, "fixed"])
    # The targets' own values are stale: the primitive's value is what the frontend sends.
    a = node(1, "EmptyLatentImage", inputs=(("width", "INT", True),), outputs=("LATENT",), widgets=[64, 64, 1])
    b = node(2, "EmptyLatentImage", inputs=(("height", "INT", True),), outputs=("LATENT",), widgets=[64, 64, 1])
    # Through a reroute the primitive does not reach the widget: it keeps its own value, and the link is dropped.
    reroute = node(3, "Reroute", inputs=(("", "*"),), outputs=("*",))
    c = node(4, "EmptyLatentImage", inputs=(("batch_size", "INT", True),), outputs=("LATENT",), widgets=[64, 64, 2])
    out = convert(workflow(prim, a, b, reroute, c, links=[(20, 0, 1, 0), (20, 0, 2, 0), (20, 0, 3, 0), (3, 0, 4, 0)]))
    assert set(out) == {"1", "2", "4"}
    assert out["1"]["inputs"] == {"width": 777, "height": 64, "batch_size": 1}
    assert out["2"]["inputs"] == {"width": 64, "height": 777, "batch_size": 1}
    assert out["4"]["inputs"] == {"width": 64, "height": 64, "batch_size": 2}


def test_backend_primitive_nodes_are_real_nodes_and_linked_widgets_take_the_link():
    prim = node(20, "PrimitiveInt", outputs=("INT",), widgets=[9, "randomize"])
    target = node(1, "EmptyLatentImage", inputs=(("width", "INT", True),), outputs=("LATENT",), widgets=[64, 32, 1])
    out = convert(workflow(prim, target, links=[(20, 0, 1, 0)]))
    assert out["20"] == {"class_type": "PrimitiveInt", "inputs": {"value": 9}}
    assert out["1"]["inputs"] == {"width": ["20", 0], "height": 32, "batch_size": 1}


# -- modes ------------------------------------------------------------------------------------------------------


def test_muted_nodes_are_dropped_with_the_links_to_them():
    prim = node(20, "PrimitiveInt", outputs=("INT",), widgets=[9, "fixed"], mode=2)
    target = node(1, "EmptyLatentImage", inputs=(("width", "INT", True),), outputs=("LATENT",), widgets=[48, 32, 1])
    out = convert(workflow(prim, target, latent(2, mode=2), decode(3), links=[(20, 0, 1, 0), (2, 0, 3, 0)]))
    assert set(out) == {"1", "3"}
    assert out["1"]["inputs"] == {"width": 48, "height": 32, "batch_size": 1}  # the widget value stays
    assert out["3"]["inputs"] == {}


def test_bypassed_nodes_pass_the_matching_input_through():
    upscale = node(3, "LatentUpscaleBy", inputs=(("samples", "LATENT"),), outputs=("LATENT",),
                   widgets=["bilinear", 2.0], mode=4)
    again = node(4, "LatentUpscaleBy", inputs=(("samples", "LATENT"),), outputs=("LATENT",),
                 widgets=["bilinear", 2.0], mode=4)
    lora = node(5, "LoraLoader", inputs=(("model", "MODEL"), ("clip", "CLIP")), outputs=("MODEL", "CLIP"),
                widgets=["l.safetensors", 1.0, 1.0], mode=4)
    text = node(6, "CLIPTextEncode", inputs=(("clip", "CLIP"),), outputs=("CONDITIONING",), widgets=["x"])
    sampler = node(7, "KSampler", inputs=(("model", "MODEL"), ("positive", "CONDITIONING"),
                                          ("negative", "CONDITIONING"), ("latent_image", "LATENT")),
                   outputs=("LATENT",), widgets=[1, "fixed", 2, 3.0, "euler", "normal", 1.0])
    out = convert(workflow(loader(), latent(), upscale, again, lora, text, sampler, decode(8),
                           links=[(2, 0, 3, 0), (3, 0, 4, 0), (4, 0, 8, 0), (1, 0, 5, 0), (1, 1, 5, 1),
                                  (5, 1, 6, 0), (5, 0, 7, 0), (6, 0, 7, 1)]))
    assert "3" not in out and "4" not in out and "5" not in out
    assert out["8"]["inputs"] == {"samples": ["2", 0]}  # through two bypassed nodes
    assert out["6"]["inputs"]["clip"] == ["1", 1]  # output 1 (CLIP) gets input 1
    assert out["7"]["inputs"]["model"] == ["1", 0]


def test_bypass_picks_an_input_of_the_requested_type_and_else_drops_the_link():
    # outputs in the other order than the inputs: each output finds the input of its type
    swap = node(3, "Swap", inputs=(("a", "IMAGE"), ("b", "MASK")), outputs=("MASK", "IMAGE"), mode=4)
    image = node(1, "LoadImage", outputs=("IMAGE", "MASK"), widgets=["x.png", "image"])
    use = node(4, "Use", inputs=(("m", "MASK"), ("i", "IMAGE")), outputs=())
    lonely = node(5, "Swap", inputs=(("a", "IMAGE"), ("b", "MASK")), outputs=("MASK", "IMAGE"), mode=4)
    use2 = node(6, "Use", inputs=(("m", "MASK"), ("i", "IMAGE")), outputs=())
    # an input of exactly the requested type goes before an earlier one that merely accepts it ("*")
    pick = node(7, "Pick", inputs=(("a", "IMAGE"), ("b", "*"), ("c", "MASK")), outputs=("MASK",), mode=4)
    use3 = node(8, "Use", inputs=(("m", "MASK"), ("i", "IMAGE")), outputs=())
    other = node(9, "LoadImage", outputs=("IMAGE", "MASK"), widgets=["y.png", "image"])
    uses = info({"m": ["MASK"], "i": ["IMAGE"]})
    out = convert(workflow(image, swap, use, lonely, use2, pick, use3, other,
                           links=[(1, 0, 3, 0), (1, 1, 3, 1), (3, 0, 4, 0), (3, 1, 4, 1), (1, 0, 5, 0), (5, 0, 6, 0),
                                  (1, 1, 7, 1), (9, 1, 7, 2), (7, 0, 8, 0)]),
                  {**INFO, "Use": uses})
    assert out["4"]["inputs"] == {"m": ["1", 1], "i": ["1", 0]}
    assert out["6"]["inputs"] == {}  # a MASK was asked for and the bypassed node only has an IMAGE
    assert out["8"]["inputs"] == {"m": ["9", 1]}


def test_a_wildcard_consumer_gets_the_bypassed_input_of_the_same_slot():
    lora = node(5, "LoraLoader", inputs=(("model", "MODEL"), ("clip", "CLIP")), outputs=("MODEL", "CLIP"),
                widgets=["l.safetensors", 1.0, 1.0], mode=4)
    show = node(6, "ShowAny", inputs=(("value", "*"),), outputs=())
    out = convert(workflow(loader(), lora, show, links=[(1, 0, 5, 0), (1, 1, 5, 1), (5, 1, 6, 0)]),
                  {**INFO, "ShowAny": info({"value": ["*"]})})
    assert out["6"]["inputs"] == {"value": ["1", 1]}


def test_unknown_node_types_are_reported_by_name_unless_muted_or_bypassed():
    wf = workflow(loader(), node(2, "FancyUpscaler", widgets=[1]), node(3, "FancyUpscaler"), node(4, "Gone", mode=2),
                  node(5, "Gone", mode=4))
    with pytest.raises(UnknownNodeTypes) as caught:
        to_api_prompt(wf, INFO)
    assert caught.value.types == ("FancyUpscaler",)
    assert "FancyUpscaler (node 2, 3)" in str(caught.value)


def test_circular_reroutes_raise():
    r1 = node(10, "Reroute", inputs=(("", "*"),), outputs=("*",))
    r2 = node(11, "Reroute", inputs=(("", "*"),), outputs=("*",))
    with pytest.raises(WorkflowError, match="circular"):
        to_api_prompt(workflow(r1, r2, decode(3), links=[(10, 0, 11, 0), (11, 0, 10, 0), (11, 0, 3, 0)]), INFO)


# -- subgraphs --------------------------------------------------------------------------------------------------


def sampler_subgraph():
    """A subgraph "S" (inputs model, positive, latent, seed (promoted widget), steps (promoted widget);
    output LATENT) around one KSampler whose negative prompt is encoded inside from the positive's clip."""
    inner_sampler = node(1, "KSampler", inputs=(("model", "MODEL"), ("positive", "CONDITIONING"),
                                                ("negative", "CONDITIONING"), ("latent_image", "LATENT"),
                                                ("seed", "INT", True), ("steps", "INT", True)),
                         outputs=("LATENT",), widgets=[11, "fixed", 22, 5.0, "euler", "normal", 1.0])
    return subgraph("S", [("model", "MODEL"), ("positive", "CONDITIONING"), ("latent", "LATENT"),
                          ("seed", "INT"), ("steps", "INT")], [("LATENT", "LATENT")], [inner_sampler],
                    [("in", 0, 1, 0), ("in", 1, 1, 1), ("in", 1, 1, 2), ("in", 2, 1, 3), ("in", 3, 1, 4),
                     ("in", 4, 1, 5), (1, 0, "out", 0)])


def subgraph_node(id, widgets=None, mode=0, **extra):
    return node(id, "S", inputs=(("model", "MODEL"), ("positive", "CONDITIONING"), ("latent", "LATENT"),
                                 ("seed", "INT", True), ("steps", "INT", True)),
                outputs=("LATENT",), widgets=widgets, mode=mode, **extra)


def test_subgraphs_are_flattened_with_prefixed_ids_and_promoted_widget_values():
    text = node(4, "CLIPTextEncode", inputs=(("clip", "CLIP"),), outputs=("CONDITIONING",), widgets=["x"])
    prim = node(20, "PrimitiveInt", outputs=("INT",), widgets=[99, "fixed"])
    wf = workflow(loader(), latent(), text, prim, subgraph_node(7, widgets=[5, 6]), subgraph_node(8), decode(9),
                  links=[(1, 1, 4, 0), (1, 0, 7, 0), (4, 0, 7, 1), (2, 0, 7, 2), (1, 0, 8, 0), (4, 0, 8, 1),
                         (7, 0, 8, 2), (20, 0, 8, 4), (8, 0, 9, 0), (1, 2, 9, 1)],
                  subgraphs=[sampler_subgraph()])
    out = convert(wf)
    assert set(out) == {"1", "2", "4", "20", "7:1", "8:1", "9"}
    links = {"model": ["1", 0], "positive": ["4", 0], "negative": ["4", 0]}
    # the subgraph node's own values for its promoted widgets
    assert out["7:1"]["inputs"] == {**links, "latent_image": ["2", 0], "seed": 5, "steps": 6, "cfg": 5.0,
                                    "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0}
    # no values saved: the inner widgets' values; a linked subgraph input takes the link
    assert out["8:1"]["inputs"] == {**links, "latent_image": ["7:1", 0], "seed": 11, "steps": ["20", 0],
                                    "cfg": 5.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0}
    assert out["9"]["inputs"] == {"samples": ["8:1", 0], "vae": ["1", 2]}


def test_named_promoted_values_nested_subgraphs_and_subgraph_modes():
    outer = subgraph("T", [("model", "MODEL"), ("positive", "CONDITIONING"), ("latent", "LATENT"), ("seed", "INT")],
                     [("LATENT", "LATENT")], [subgraph_node(3, widgets=[1, 2])],
                     [("in", 0, 3, 0), ("in", 1, 3, 1), ("in", 2, 3, 2), ("in", 3, 3, 3), (3, 0, "out", 0)])
    text = node(4, "CLIPTextEncode", inputs=(("clip", "CLIP"),), outputs=("CONDITIONING",), widgets=["x"])
    t_node = node(6, "T", inputs=(("model", "MODEL"), ("positive", "CONDITIONING"), ("latent", "LATENT"),
                                  ("seed", "INT", True)), outputs=("LATENT",), widgets_values_named={"seed": 123})
    bypassed = subgraph_node(7, mode=4)
    muted = subgraph_node(8, mode=2)
    wf = workflow(loader(), latent(), text, t_node, bypassed, muted, decode(9), decode(10),
                  links=[(1, 1, 4, 0), (1, 0, 6, 0), (4, 0, 6, 1), (2, 0, 6, 2), (6, 0, 7, 2), (7, 0, 9, 0),
                         (1, 0, 8, 0), (8, 0, 10, 0)],
                  subgraphs=[outer, sampler_subgraph()])
    out = convert(wf)
    assert set(out) == {"1", "2", "4", "6:3:1", "9", "10"}
    sampler = out["6:3:1"]["inputs"]
    assert sampler["latent_image"] == ["2", 0] and sampler["model"] == ["1", 0]
    assert sampler["seed"] == 123 and sampler["steps"] == 2  # by name from T; positionally from the inner S
    assert out["9"]["inputs"] == {"samples": ["6:3:1", 0]}  # the bypassed subgraph passes its LATENT through
    assert out["10"]["inputs"] == {}


# -- real templates (comfyui-workflow-templates) -------------------------------------------------------------------


def installed(name: str) -> dict:
    for root in installed_template_roots():
        if (root / f"{name}.json").is_file():
            return json.loads((root / f"{name}.json").read_text(encoding="utf-8"))
    pytest.fail(f"template {name} is not in the installed comfyui-workflow-templates")


def test_template_image_sdxl_simple():
    wf = installed("image_sdxl_simple")
    prompt = to_api_prompt(wf, INFO)
    texts = {n["id"]: n["widgets_values"][0] for n in wf["nodes"] if n["type"] == "CLIPTextEncode"}
    assert {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in prompt.items()} == {
        "15": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"}},
        "10": {"class_type": "CLIPTextEncode", "inputs": {"text": texts[10], "clip": ["15", 1]}},
        "11": {"class_type": "CLIPTextEncode", "inputs": {"text": texts[11], "clip": ["15", 1]}},
        "13": {"class_type": "EmptyLatentImage", "inputs": {"width": 1024, "height": 1024, "batch_size": 1}},
        "12": {"class_type": "KSampler", "inputs": {
            "seed": 812045847300606, "steps": 25, "cfg": 7, "sampler_name": "dpmpp_2m", "scheduler": "karras",
            "denoise": 1, "model": ["15", 0], "positive": ["10", 0], "negative": ["11", 0],
            "latent_image": ["13", 0]}},
        "14": {"class_type": "VAEDecode", "inputs": {"samples": ["12", 0], "vae": ["15", 2]}},
        "7": {"class_type": "SaveImage", "inputs": {"filename_prefix": "sdxl_simple", "images": ["14", 0]}},
    }
    assert prompt["10"]["_meta"] == {"title": "Positive Prompt"}  # the node's own title
    assert prompt["14"]["_meta"] == {"title": "VAEDecode"}  # else the display name (here: none, the type)
    assert texts[10].startswith("a giant classical marble statue")


def test_template_sdxl_simple_example_with_primitive_nodes_and_notes():
    prompt = convert(installed("sdxl_simple_example"))
    assert set(prompt) == {"4", "5", "6", "7", "10", "11", "12", "15", "16", "17", "19"}  # no Note/Primitive
    positive = "evening sunset scenery blue sky nature, glass bottle with a galaxy in it"
    for node_id, clip, text in (("6", "4", positive), ("7", "4", "text, watermark"), ("15", "12", positive),
                                ("16", "12", "text, watermark")):
        assert prompt[node_id]["inputs"] == {"text": text, "clip": [clip, 1]}
    assert prompt["10"]["inputs"] == {
        "add_noise": "enable", "noise_seed": 721897303308196, "steps": 25, "cfg": 8, "sampler_name": "euler",
        "scheduler": "normal", "start_at_step": 0, "end_at_step": 20, "return_with_leftover_noise": "enable",
        "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}
    assert prompt["11"]["inputs"] == {
        "add_noise": "disable", "noise_seed": 0, "steps": 25, "cfg": 8, "sampler_name": "euler",
        "scheduler": "normal", "start_at_step": 20, "end_at_step": 10000, "return_with_leftover_noise": "disable",
        "model": ["12", 0], "positive": ["15", 0], "negative": ["16", 0], "latent_image": ["10", 0]}
    assert prompt["17"]["inputs"] == {"samples": ["11", 0], "vae": ["12", 2]}
