"""DoRA and LoKr files against ComfyUI's math and key names, re-derived here (no ComfyUI code).

Followed, in ComfyUI (pollockjj/ComfyUI, carrying upstream 3cd7b32):

* ``comfy/lora.py:load_lora`` — per file name ``x`` it reads ``x.alpha`` and ``x.dora_scale``
  and hands ``x`` to each adapter's ``load``; every key not consumed is "lora key not loaded".
* ``comfy/weight_adapter/lora.py:LoRAAdapter.calculate_weight`` — ``ΔW = up @ down``, scale
  ``alpha / down.shape[0]`` (1.0 without alpha); with a ``dora_scale``:
* ``comfy/weight_adapter/base.py:weight_decompose`` — ``W' = (W + s·ΔW) · dora_scale / (‖·‖ + eps)``
  where the norm is the row norm of the *base* ``W`` when ``dora_scale`` has one entry per
  output row (else column norms of ``W + s·ΔW``).
* ``comfy/weight_adapter/lokr.py:LoKrAdapter.calculate_weight`` — ``w1 = lokr_w1`` (or
  ``w1_a @ w1_b``), ``w2 = lokr_w2`` (or ``w2_a @ w2_b``), ``ΔW = kron(w1, w2)``, scale
  ``alpha / dim`` only when a factor is decomposed and an alpha is present, else 1.0.
* ``comfy/lora.py:model_lora_keys_unet`` — which names map: ``lora_unet_<BFL name with _>``
  for every model weight; for FLUX.1 also ``transformer.<diffusers name>`` (a row slice of
  a fused layer, applied to that slice); for Qwen-Image also the bare and the
  ``transformer.``-prefixed diffusers names.

peft's weight is read from the adapted layer's forward on the identity (no peft internals).
"""

from __future__ import annotations

import pytest
import torch

from lorastudio.adapter_rules import LOKR_UNLOADABLE
from lorastudio.config import ConfigError
from lorastudio.config_rules import check_adapter_format
from lorastudio.training.adapter_files import peft_state_from_file
from lorastudio.training.formats import BFL_RULES, architecture, bfl_name, kohya_name
from lorastudio.training.lora import add_lora, export_state_dict, is_adapter_parameter, linear_targets, peft_state_dict

RANK, ALPHA = 4, 8.0
FAMILIES = [("kontext", "tiny_kontext_dir"), ("flux2-klein", "tiny_flux2_klein_dir"),
            ("qwen-image", "tiny_qwen_image_dir")]
COMBOS = [(a, f) for a in ("dora", "lokr") for f in ("diffusers", "comfyui")]


def _model(request, family, fixture, adapter=None, seed=0):
    from lorastudio.training.families import FAMILIES as CLASSES

    cls = CLASSES[family]
    folder = request.getfixturevalue(fixture)
    model = cls.transformer_class().from_pretrained(str(folder), subfolder="transformer").float().eval()
    targets = linear_targets(model, cls.lora_target_modules)
    if adapter:
        add_lora(model, RANK, ALPHA, cls.lora_target_modules, adapter)
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():  # trained-looking weights: every factor non-zero, magnitudes moved
            for name, p in model.named_parameters():
                if is_adapter_parameter(name):
                    p.copy_(p * (1 + 0.2 * torch.randn(p.shape, generator=g)) if "magnitude" in name
                            else 0.3 * torch.randn(p.shape, generator=g))
    return model, targets


def _peft_weight(model, module: str) -> torch.Tensor:
    layer = model.get_submodule(module)
    base = layer.get_base_layer()
    with torch.no_grad():
        eye = torch.eye(base.in_features)
        bias = base.bias if base.bias is not None else 0
        return (layer(eye) - bias).T


def _comfy_targets(names, family: str, fmt: str) -> dict[str, list[str]]:
    """File name → the diffusers modules whose rows make up the weight ComfyUI patches."""
    arch = architecture(family)
    out: dict[str, list[tuple[int, str]]] = {}
    for m in names:
        if fmt == "comfyui":
            target, part = (bfl_name(m, arch)[:2] if arch in BFL_RULES else (m, 0))
            out.setdefault(kohya_name(target), []).append((part, m))
        else:  # diffusers names: ComfyUI narrows the fused weight to this module's rows
            out.setdefault("transformer." + m, []).append((0, m))
    return {k: [m for _, m in sorted(v)] for k, v in out.items()}


def _comfy_apply(weight: torch.Tensor, tensors: dict, x: str, consumed: set) -> torch.Tensor:
    alpha = tensors[f"{x}.alpha"].item() if f"{x}.alpha" in tensors else None
    dora = tensors.get(f"{x}.dora_scale")
    consumed.update(k for k in (f"{x}.alpha", f"{x}.dora_scale") if k in tensors)
    if f"{x}.lora_up.weight" in tensors or f"{x}.lora_B.weight" in tensors:
        up_key = f"{x}.lora_up.weight" if f"{x}.lora_up.weight" in tensors else f"{x}.lora_B.weight"
        down_key = up_key.replace("lora_up", "lora_down").replace("lora_B", "lora_A")
        up, down = tensors[up_key].float(), tensors[down_key].float()
        consumed.update((up_key, down_key))
        scale = alpha / down.shape[0] if alpha is not None else 1.0
        diff = up @ down
    else:
        keys = {s: tensors.get(f"{x}.{s}") for s in ("lokr_w1", "lokr_w1_a", "lokr_w1_b", "lokr_w2", "lokr_w2_a",
                                                   "lokr_w2_b")}
        consumed.update(f"{x}.{s}" for s, v in keys.items() if v is not None)
        dim = None
        w1 = keys["lokr_w1"]
        if w1 is None:
            dim, w1 = keys["lokr_w1_b"].shape[0], keys["lokr_w1_a"] @ keys["lokr_w1_b"]
        w2 = keys["lokr_w2"]
        if w2 is None:
            dim, w2 = keys["lokr_w2_b"].shape[0], keys["lokr_w2_a"] @ keys["lokr_w2_b"]
        scale = alpha / dim if (alpha is not None and dim is not None) else 1.0
        diff = torch.kron(w1.float(), w2.float()).reshape(weight.shape)
    if dora is None:
        return weight + scale * diff
    calc = weight + scale * diff
    if dora.shape[0] == weight.shape[0]:
        norm = weight.reshape(weight.shape[0], -1).norm(dim=1, keepdim=True)
    else:
        norm = calc.T.reshape(calc.shape[1], -1).norm(dim=1, keepdim=True).T
    return calc * (dora.float() / (norm + torch.finfo(weight.dtype).eps))


@pytest.mark.parametrize("family,fixture", FAMILIES, ids=[f for f, _ in FAMILIES])
def test_comfyui_applies_each_adapter_as_peft_does(request, family, fixture, tmp_path):
    """Every key of every allowed (adapter, format) file is consumed under a name ComfyUI maps,
    and ComfyUI's weight for every adapted layer equals peft's; the file also loads back into
    peft (as ``lorastudio sample`` does) to the same weights. Refused combinations are refused
    by the config check, and those are exactly the ones whose names ComfyUI fuses."""
    arch = architecture(family)
    for adapter, fmt in COMBOS:
        if fmt in LOKR_UNLOADABLE.get(family, ()) and adapter == "lokr":
            with pytest.raises(ConfigError, match="train.adapter"):
                check_adapter_format(adapter, fmt, family)
            continue
        check_adapter_format(adapter, fmt, family)
        model, targets = _model(request, family, fixture, adapter)
        if adapter == "dora" and fmt == "diffusers":  # for diffusers' own loader (ComfyUI: the comfyui file)
            _check_diffusers_loads_dora(request, family, fixture, model, targets, tmp_path)
            continue
        tensors = export_state_dict(peft_state_dict(model), RANK, ALPHA, family, fmt=fmt, adapter=adapter,
                                    transformer=model)
        names = _comfy_targets(targets, family, fmt)
        if arch == "qwen" and fmt == "diffusers":  # bare diffusers names (ComfyUI's Qwen map takes them)
            names = {k[len("transformer."):]: v for k, v in names.items()}
        consumed: set[str] = set()
        for x, modules in names.items():
            base = torch.cat([model.get_submodule(m).get_base_layer().weight.detach().float() for m in modules])
            got = _comfy_apply(base.clone(), tensors, x, consumed)
            expected = torch.cat([_peft_weight(model, m) for m in modules])
            assert (expected - base).abs().max() > 1e-3, (adapter, fmt, x)  # the adapter does something
            torch.testing.assert_close(got, expected, atol=2e-5, rtol=1e-4, msg=f"{adapter}/{fmt}: {x}")
        assert consumed == set(tensors), (adapter, fmt, sorted(set(tensors) - consumed)[:4])

        fresh, _ = _model(request, family, fixture)
        from lorastudio.training.lora import adapter_config
        from peft import inject_adapter_in_model, set_peft_model_state_dict

        state = peft_state_from_file(tensors, fresh, family, fmt, adapter, RANK, targets)
        inject_adapter_in_model(adapter_config(adapter, RANK, RANK, targets), fresh, adapter_name="default")
        set_peft_model_state_dict(fresh, state, adapter_name="default")
        for m in targets:
            torch.testing.assert_close(_peft_weight(fresh, m), _peft_weight(model, m), atol=2e-5, rtol=1e-4)


def _check_diffusers_loads_dora(request, family, fixture, model, targets, tmp_path):
    """The ``diffusers``-format DoRA, read by the family pipeline's own LoRA loader
    (``lora_state_dict`` + ``load_lora_into_transformer``), gives peft's weights."""
    from lorastudio.training.families import FAMILIES as CLASSES
    from lorastudio.training.lora import export_metadata, save_lora_file
    from lorastudio.training.sample import load_lora_into

    path = save_lora_file(tmp_path / f"{family}-dora.safetensors",
                          export_state_dict(peft_state_dict(model), RANK, ALPHA, family, adapter="dora"),
                          export_metadata(family=family, base_model="m", rank=RANK, alpha=ALPHA, steps=1,
                                          learning_rate=1e-4, resolution=64, sets=1, trigger="", adapter="dora"))
    fresh, _ = _model(request, family, fixture)
    load_lora_into(fresh, CLASSES[family].pipeline_class(), path)
    for m in targets:
        torch.testing.assert_close(_peft_weight(fresh, m), _peft_weight(model, m), atol=2e-5, rtol=1e-4)
