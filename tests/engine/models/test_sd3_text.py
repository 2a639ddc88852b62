"""SD3's text side: CLIP-L + CLIP-G + T5-XXL (or any subset) joined as ComfyUI joins them, against transformers
models built directly from the same tiny files, float32 on CPU."""
from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
import transformers
from safetensors.torch import load_file, save_file

from engine.models.clip import TextEncoder
from engine.models.detect import detect_text_encoder
from engine.models.load import CastingReader, build_text_encoder, load_clip_file, open_checkpoint
from engine.models.t5 import load_t5_file
from engine.text.clip_tokenizer import END_ID, clip_tokenizer
from tests.engine.models.test_t5 import hf_tokenizer, reference_model  # noqa: F401 (hf_tokenizer: a fixture)
from tests.fixtures.checkpoints import CLIP_G_FILE, write_clip_g, write_clip_l
from tests.fixtures.t5 import SD3_T5, T5Layout, write_t5

# CLIP-G alone sits behind 768 zero features, which a T5 has to be wider than to take them.
WIDE_T5 = T5Layout(d_model=832)
PROMPT = "a red fox jumping over a log, photo"
SUBSETS = [combo for n in (1, 2, 3) for combo in itertools.combinations(("l", "g", "t5xxl"), n)]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sd3_text")
    return {"l": write_clip_l(folder / "clip_l.safetensors", projection=True),
            "g": write_clip_g(folder / "clip_g.safetensors"),
            "t5xxl": write_t5(folder / "t5xxl.safetensors", layout=SD3_T5),
            "wide_t5xxl": write_t5(folder / "t5xxl_wide.safetensors", layout=WIDE_T5)}


@pytest.fixture(scope="module")
def models(files):
    loaded = {name: load_clip_file(files[name], "cpu", torch.float32) for name in ("l", "g")}
    loaded.update({name: load_t5_file(files[name], "cpu", torch.float32) for name in ("t5xxl", "wide_t5xxl")})
    assert (loaded["l"].name, loaded["g"].name, loaded["t5xxl"].name) == ("l", "g", "t5xxl")
    return {name: item.model for name, item in loaded.items()}


def sd3(models, names, t5="t5xxl") -> TextEncoder:
    return TextEncoder({name: models[t5 if name == "t5xxl" else name] for name in names}, "sd3")


# --- references: transformers models configured by hand from the fixtures' sizes --------------------------------

def clip_reference(path, *, width, layers, intermediate, act, projection, pad):
    """(hidden_states[-2] unnormed, pooler_output, text_embeds) for one 77-token window of PROMPT."""
    config = transformers.CLIPTextConfig(vocab_size=49408, hidden_size=width, intermediate_size=intermediate,
                                         num_hidden_layers=layers, num_attention_heads=1, max_position_embeddings=77,
                                         projection_dim=projection, hidden_act=act)
    model = transformers.CLIPTextModelWithProjection(config).eval()
    tensors = {k: v.float() for k, v in load_file(str(path)).items()}
    missing, _ = model.load_state_dict(tensors, strict=False)  # the file's position ids may be extra
    assert not missing
    ids = clip_tokenizer()(PROMPT)
    ids = torch.tensor([ids + [pad] * (77 - len(ids))])
    with torch.no_grad():
        out = model.text_model(input_ids=ids, output_hidden_states=True)
        return out.hidden_states, out.pooler_output, model.text_projection(out.pooler_output)


def clip_l_reference(files):
    hidden, pooled, _ = clip_reference(files["l"], width=32, layers=2, intermediate=64, act="quick_gelu",
                                       projection=32, pad=END_ID)
    return hidden, pooled  # SD3 takes CLIP-L's pooled output unprojected


def clip_g_reference(files):
    g = CLIP_G_FILE
    hidden, _, projected = clip_reference(files["g"], width=g.width, layers=g.layers, intermediate=g.intermediate,
                                          act="gelu", projection=g.projection, pad=0)
    return hidden, projected


def t5_reference(files, tokenizer, name="t5xxl", layout=SD3_T5):
    ids = tokenizer(PROMPT).input_ids
    model = reference_model(load_file(str(files[name])), layout)
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids + [0] * (77 - len(ids))])).last_hidden_state


@pytest.mark.parametrize("names", SUBSETS, ids="+".join)
def test_joined_conditioning_matches_transformers(files, models, hf_tokenizer, names):  # noqa: F811
    wide = "g" in names and "l" not in names and "t5xxl" in names
    clip = sd3(models, names, t5="wide_t5xxl" if wide else "t5xxl")
    tokens = clip.tokenize(PROMPT)
    assert set(tokens) == {"l", "g", "t5xxl"}  # every encoder gets tokens, also those this CLIP lacks
    cond, pooled = clip.encode_from_tokens(tokens, return_pooled=True)

    clip_part, pooled_parts = None, []
    if "l" in names:
        hidden, l_pooled = clip_l_reference(files)
        clip_part = hidden[-2]
        pooled_parts.append(l_pooled)
    else:
        pooled_parts.append(torch.zeros(1, 768))
    if "g" in names:
        hidden, g_pooled = clip_g_reference(files)
        g_part = hidden[-2]
        clip_part = torch.cat([clip_part, g_part], -1) if clip_part is not None else F.pad(g_part, (768, 0))
        pooled_parts.append(g_pooled)
    else:
        pooled_parts.append(torch.zeros(1, 1280))
    expected = clip_part
    if "t5xxl" in names:
        t5_part = t5_reference(files, hf_tokenizer, *(("wide_t5xxl", WIDE_T5) if wide else ()))
        expected = t5_part if clip_part is None else torch.cat(
            [F.pad(clip_part, (0, t5_part.shape[-1] - clip_part.shape[-1])), t5_part], dim=1)

    assert cond.shape == expected.shape
    torch.testing.assert_close(cond, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(pooled, torch.cat(pooled_parts, -1), rtol=1e-5, atol=1e-5)


def test_widths(models):
    cond, pooled = sd3(models, ("l", "g", "t5xxl")).encode_from_tokens(
        sd3(models, ("l",)).tokenize(PROMPT), return_pooled=True)
    assert cond.shape == (1, 77 + 77, 96) and pooled.shape == (1, 32 + 48)
    assert torch.count_nonzero(cond[:, :77, 80:]) == 0  # the CLIP part's zero padding up to T5's width
    cond, pooled = sd3(models, ("l", "g")).encode_from_tokens(sd3(models, ("l",)).tokenize(PROMPT),
                                                               return_pooled=True)
    assert cond.shape == (1, 77, 80)  # no T5: the CLIP part keeps its own width


def test_long_prompts_keep_the_clip_windows_then_t5(models):
    clip = sd3(models, ("l", "g", "t5xxl"))
    tokens = clip.tokenize(" ".join(f"word{i}" for i in range(40)))
    windows, t5_length = len(tokens["l"]), len(tokens["t5xxl"][0])
    assert windows == len(tokens["g"]) > 1 and len(tokens["t5xxl"]) == 1 and t5_length > 77
    cond = clip.encode_from_tokens(tokens)
    assert cond.shape == (1, windows * 77 + t5_length, 96)
    torch.testing.assert_close(cond[:, windows * 77:], sd3(models, ("t5xxl",)).encode_from_tokens(tokens))


def test_no_clip_tokens(models):
    clip = sd3(models, ("l", "g", "t5xxl"))
    tokens = clip.tokenize(PROMPT)
    t5_only = sd3(models, ("t5xxl",))
    expected = t5_only.encode_from_tokens(tokens)
    cond, pooled = clip.encode_from_tokens({**tokens, "l": [], "g": []}, return_pooled=True)
    assert torch.equal(cond, expected) and cond.shape == (1, 77, 96)
    assert torch.equal(pooled, torch.zeros(1, 2048))
    # No T5 either: ComfyUI's zeros.
    cond, pooled = sd3(models, ("l", "g")).encode_from_tokens({**tokens, "l": [], "g": []}, return_pooled=True)
    assert torch.equal(cond, torch.zeros(1, 77, 4096)) and torch.equal(pooled, torch.zeros(1, 2048))


def test_empty_t5_tokens_encode_the_end_token_alone(models):
    clip = sd3(models, ("l", "t5xxl"))
    tokens = clip.tokenize(PROMPT)
    cond = clip.encode_from_tokens({**tokens, "t5xxl": []})
    assert cond.shape == (1, 77 + 1, 96)
    alone = sd3(models, ("t5xxl",)).encode_from_tokens({"l": [], "g": [], "t5xxl": []})
    assert torch.equal(cond[:, 77:], alone)


def test_clip_g_alone_must_fit_t5(models):
    with pytest.raises(ValueError, match=r"CLIP features \(816 wide\) are wider than its T5-XXL \(96\)"):
        sd3(models, ("g", "t5xxl")).encode_from_tokens(sd3(models, ("g",)).tokenize(PROMPT))


def test_last_layer_applies_to_every_encoder(files, models, hf_tokenizer):  # noqa: F811
    clip = sd3(models, ("l", "g", "t5xxl"))
    skipped = clip.clone()
    skipped.clip_layer(-1)
    base, base_pooled = clip.encode_from_tokens(clip.tokenize(PROMPT), return_pooled=True)
    cond, pooled = skipped.encode_from_tokens(skipped.tokenize(PROMPT), return_pooled=True)
    (l_hidden, _), (g_hidden, _) = clip_l_reference(files), clip_g_reference(files)
    # -1 is each CLIP's last layer, without the final norm; T5's last layer has it (its final output).
    torch.testing.assert_close(cond[:, :77, :80], torch.cat([l_hidden[-1], g_hidden[-1]], -1), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(cond[:, :77], base[:, :77])
    assert torch.equal(cond[:, 77:], base[:, 77:])
    assert torch.equal(pooled, base_pooled)  # pooled outputs come from the final output whatever the layer


def test_all_in_one_checkpoint_prefixes(tmp_path, files, models):
    """SD3 checkpoints keep the encoders under text_encoders.{clip_l,clip_g,t5xxl}.transformer.: the same
    tensors there make the same CLIP."""
    tensors = {f"text_encoders.clip_{name}.transformer.{key}": value
               for name in ("l", "g") for key, value in load_file(str(files[name])).items()}
    tensors.update({f"text_encoders.t5xxl.transformer.{key}": value
                    for key, value in load_file(str(files["t5xxl"])).items()})
    path = tmp_path / "sd3_all_in_one.safetensors"
    save_file(tensors, path)
    encoders = {}
    cpu = torch.device("cpu")
    with open_checkpoint(path, cpu) as file:
        for name in ("l", "g"):
            spec = detect_text_encoder(file.shapes, f"text_encoders.clip_{name}.transformer.", name)
            assert (spec.layout, spec.prefix) == ("transformers", f"text_encoders.clip_{name}.transformer.text_model.")
            encoders[name] = build_text_encoder(spec, CastingReader(file.shapes, file.read, cpu, torch.float32),
                                                name=file.name).model
    assert encoders["g"].config.projection_dim == 48 and encoders["g"].config.hidden_act == "gelu"
    encoders["t5xxl"] = load_t5_file(path, "cpu", torch.float32).model
    ours = TextEncoder(encoders, "sd3")
    cond, pooled = ours.encode_from_tokens(ours.tokenize(PROMPT), return_pooled=True)
    expected, expected_pooled = sd3(models, ("l", "g", "t5xxl")).encode_from_tokens(
        ours.tokenize(PROMPT), return_pooled=True)
    assert torch.equal(cond, expected) and torch.equal(pooled, expected_pooled)
