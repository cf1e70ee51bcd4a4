"""The VRAM/time estimate (lorastudio/estimate.py): exact counts from safetensors headers,
the right shape (monotonic, savers save), the real FLUX.1 figures, and no torch import."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from lorastudio import estimate as E
from lorastudio.memory_presets import MEMORY_PRESETS

KONTEXT_1024_TOKENS = 4096 + 4096 + 512


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory):
    from lorastudio.training.tiny import build_tiny_model

    root = tmp_path_factory.mktemp("estimate")
    return {f: build_tiny_model(f, root / f) for f in ("kontext", "qwen-edit-plus", "flux2-klein", "zimage-omni")}


@pytest.mark.parametrize("family", ["kontext", "qwen-edit-plus", "flux2-klein", "zimage-omni"])
def test_header_counts_equal_torch_counts(tiny_dirs, family):
    import torch

    from lorastudio.training.families import FAMILIES
    from lorastudio.training.lora import add_lora

    facts = E.model_facts(tiny_dirs[family])
    cls = FAMILIES[family]
    transformer = cls(tiny_dirs[family], torch.device("cpu"), torch.float32).load_transformer()
    assert facts.family == family
    assert facts.params == sum(p.numel() for p in transformer.parameters())
    linear = sum(m.weight.numel() for n, m in transformer.named_modules()
                 if isinstance(m, torch.nn.Linear) and n.startswith(facts.record.block_prefixes))
    assert facts.block_linear_params == linear
    rank = 4
    lora = add_lora(transformer, rank, rank, cls.lora_target_modules)
    assert rank * facts.lora_in_out == sum(p.numel() for p in lora)  # LoRA size from shapes = peft's


def test_the_estimate_reads_the_catalog():
    """Targets and text tokens come from the family's catalog record; a model LoRA Studio does
    not train is estimated with every block linear targeted."""
    from lorastudio import catalog

    shapes = {"transformer_blocks.0.attn.to_q.weight": ("BF16", (8, 8)),
              "transformer_blocks.0.norm1.linear.weight": ("BF16", (16, 8))}
    assert E.facts_from("kontext", {}, shapes).lora_in_out == 16  # to_q only, not the AdaLN linear
    assert E.facts_from("", {}, shapes).lora_in_out == 16 + 24
    for record in catalog.FAMILIES:
        facts = E.facts_from(record.id, {}, shapes)
        assert facts.record is record and facts.edit == record.edit
        text = E.sequence_length(facts, 64, 2, "target") - 3 * (64 // E.PIXELS_PER_TOKEN) ** 2
        assert text == record.text_tokens + 2 * record.text_tokens_per_input


@pytest.fixture(scope="module")
def flux():
    """FLUX.1 Kontext [dev]'s real transformer config, built on the meta device (no weights)."""
    import torch
    from diffusers import FluxTransformer2DModel

    with torch.device("meta"):
        model = FluxTransformer2DModel(guidance_embeds=True)  # the defaults are FLUX.1's config
    shapes = {n: ("BF16", tuple(p.shape)) for n, p in model.state_dict().items()}
    return E.facts_from("kontext", dict(model.config), shapes)


@pytest.mark.parametrize("family, siglip, blocks", [("zimage", None, 34), ("zimage-omni", 1152, 36)])
def test_zimage_figures(family, siglip, blocks):
    """Z-Image-Turbo's published transformer config (dim 3840, 30 layers + 2 noise and 2 context
    refiner layers, 30 heads, Qwen3-4B captions of width 2560; Omni adds a SigLIP2-so400m branch of
    width 1152 with 2 more refiner layers), built on the meta device: the 6.15 B parameters Tongyi-MAI
    states, 12.3 GB of bf16 weights, and the tokens a 1024² sample puts in the one sequence."""
    import torch
    from diffusers import ZImageTransformer2DModel

    with torch.device("meta"):
        model = ZImageTransformer2DModel(dim=3840, n_layers=30, n_refiner_layers=2, n_heads=30, n_kv_heads=30,
                                         cap_feat_dim=2560, siglip_feat_dim=siglip, axes_dims=[32, 48, 48],
                                         axes_lens=[1536, 512, 512])
    shapes = {n: ("BF16", tuple(p.shape)) for n, p in model.state_dict().items()}
    facts = E.facts_from(family, dict(model.config), shapes)
    assert facts.block_count == blocks and facts.hidden == 3840
    assert 6.1e9 < facts.params < (6.2e9 if siglip is None else 6.6e9)  # Omni: + 2 SigLIP refiner blocks
    est = E.estimate(facts, resolution=1024, rank=16, options=E.MemoryOptions(gradient_checkpointing=True))
    assert est.weights == pytest.approx(facts.params * 2, rel=0.01)
    assert est.seq_len == (4096 + 64 if siglip is None else 2 * 4096 + 64 + 256 + 32)  # one reference
    assert not est.fits(12) and E.fit_options(facts, 24, resolution=1024, rank=16)[2]  # 24 GB: it fits somehow


def test_flux_figures(flux):
    assert flux.block_count == 57 and flux.hidden == 3072
    assert 11.8e9 < flux.params < 12.0e9
    bf16 = E.estimate(flux, resolution=1024, rank=16, options=E.MemoryOptions(gradient_checkpointing=True))
    assert bf16.weights == pytest.approx(23.8e9, rel=0.01)  # 11.9 B × 2 bytes
    assert bf16.seq_len == KONTEXT_1024_TOKENS
    assert not bf16.fits(24)  # what every FLUX trainer says: bf16 weights alone fill a 24 GB card
    options, est, fits = E.fit_options(flux, 24, resolution=1024, rank=16)
    assert fits and options.quantization == "int8" and options.gradient_checkpointing
    # the diffusers QLoRA write-up: FLUX.1-dev, NF4 + 8-bit AdamW + checkpointing, 512 px: ~9 GB
    dev = dataclasses.replace(flux, family="flux")  # FLUX.1-dev: same transformer, no input image
    qlora = E.estimate(dev, resolution=512, rank=4, options=E.MemoryOptions(True, "int4", False, "adamw8bit"))
    assert 7 < qlora.total_gb < 11, qlora.total_gb


def test_qwen_image21_figures():
    """Qwen-Image 2.1's real transformer (the class defaults are the released config: 32
    single-stream blocks, 32 heads x 128, Qwen3-VL-8B's 4096-wide text): "7B parameters in its
    visual generation component", as Qwen states. An edit sample at 1024 px: 4096 target and
    4096 input tokens (16 px per token, inputs at the training area) plus the prompt's text."""
    import torch
    from diffusers import QwenImage21Transformer2DModel

    with torch.device("meta"):
        model = QwenImage21Transformer2DModel()
    shapes = {n: ("BF16", tuple(p.shape)) for n, p in model.state_dict().items()}
    facts = E.facts_from("qwen-image-2.1", dict(model.config), shapes)
    assert facts.block_count == 32 and facts.hidden == 4096
    assert 6.9e9 < facts.params < 7.3e9
    # q/k/v/out and proj/gate/out per block; the final proj_out (4096 → 64 latent channels)
    assert facts.lora_in_out == 32 * (4 * 2 * 4096 + 3 * (4096 + 3 * 4096)) + 4096 + 64
    est = E.estimate(facts, resolution=1024, rank=16, options=E.MemoryOptions(gradient_checkpointing=True))
    assert est.seq_len == 2 * 4096 + 64 + 6
    assert est.weights == pytest.approx(2 * facts.params, rel=0.01)  # ≈ 14 GB of bf16 weights
    options, est, fits = E.fit_options(facts, 24, resolution=1024, rank=16)
    assert fits and options.quantization == "none"  # a 7B model trains in bf16 on a 24 GB card


def test_monotonic_and_savers_save(flux):
    def total(**kw):
        base = dict(resolution=512, rank=16, num_inputs=1, options=E.MemoryOptions())
        return E.estimate(flux, **{**base, **kw}).total

    assert total(resolution=512) < total(resolution=768) < total(resolution=1024)
    assert total(rank=4) < total(rank=16) < total(rank=64)
    assert total(num_inputs=0) < total(num_inputs=1) < total(num_inputs=3)
    assert total(batch_size=1) < total(batch_size=2)
    gc = E.MemoryOptions(gradient_checkpointing=True)
    assert total(options=gc) < total()
    assert total(options=E.MemoryOptions(True, "int8")) < total(options=gc)
    assert total(options=E.MemoryOptions(True, "int4")) < total(options=E.MemoryOptions(True, "int8"))
    assert total(options=E.MemoryOptions(True, optimizer="adamw8bit")) < total(options=gc)
    assert total(options=E.MemoryOptions(True, cpu_offload=True)) < total(options=gc)
    slow = E.estimate(flux, resolution=512, rank=16, options=gc).step_seconds
    assert E.estimate(flux, resolution=512, rank=16).step_seconds < slow  # recompute costs time
    assert slow < E.estimate(flux, resolution=1024, rank=16, options=gc).step_seconds


def test_presets_fit_their_cards(flux):
    for preset in MEMORY_PRESETS:
        options, est, fits = E.fit_options(flux, preset.vram_gb, resolution=preset.resolution, rank=16,
                                           input_size="target")
        assert fits and est.total_gb <= preset.vram_gb, preset
        # the static fallback (no model chosen) is what the fit picks for FLUX.1 (an input at the target's size)
        assert E.MemoryOptions(**preset.option_dict()) == options, preset
    # Kontext's default input at the pipeline's ~1 MP: 5,632 tokens at 512 px, so 16 GB needs 4-bit there
    options, est, fits = E.fit_options(flux, 16, resolution=512, rank=16)
    assert fits and est.seq_len == 1024 + 4096 + 512 and options.quantization == "int4"


def test_longcat_figures_from_the_real_config():
    """LongCat-Image(-Edit)'s published transformer config (10 double + 20 single blocks, 24 heads
    × 128, Qwen2.5-VL-7B's 3584-wide text), built on the meta device: ≈ 6.3 B parameters; a
    sample is the target, the input at the target's size, 512 caption tokens and the VL
    encoder's 326 tokens of the input."""
    import torch
    from diffusers import LongCatImageTransformer2DModel

    with torch.device("meta"):
        model = LongCatImageTransformer2DModel(num_layers=10, num_single_layers=20, attention_head_dim=128,
                                               num_attention_heads=24, joint_attention_dim=3584,
                                               pooled_projection_dim=3584, axes_dims_rope=[16, 56, 56])
    shapes = {n: ("BF16", tuple(p.shape)) for n, p in model.state_dict().items()}
    edit = E.facts_from("longcat-edit", dict(model.config), shapes)
    assert edit.block_count == 30 and edit.hidden == 3072 and 6.2e9 < edit.params < 6.35e9
    bf16 = E.estimate(edit, resolution=1024, rank=16, options=E.MemoryOptions(gradient_checkpointing=True))
    assert bf16.weights == pytest.approx(2 * edit.params, rel=0.01) and bf16.seq_len == 4096 * 2 + 512 + 326
    text_to_image = dataclasses.replace(edit, family="longcat")
    assert E.estimate(text_to_image, resolution=1024, rank=16).seq_len == 4096 + 512
    options, est, fits = E.fit_options(edit, 16, resolution=1024, rank=16)  # 16 GB: 8-bit weights
    assert fits and options.quantization == "int8"


def test_tiny_model_estimate_and_dry_run_lines(tiny_dirs):
    facts = E.model_facts(tiny_dirs["kontext"])
    est = E.estimate(facts, resolution=64, rank=4)  # "auto": Kontext's input at the pipeline's ~1 MP
    assert est.seq_len == 16 + 4096 + 512 and est.total > 0
    assert E.estimate(facts, resolution=64, rank=4, input_size="target").seq_len == 16 + 16 + 512
    lines = est.lines(steps=100)
    assert lines[0].startswith("memory:") and "GB" in lines[1] and "100 steps" in lines[2]
    assert "GB of GPU memory" in est.summary()


def test_bad_files_are_named(tmp_path):
    folder = tmp_path / "model"
    (folder / "transformer").mkdir(parents=True)
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "FluxKontextPipeline"}))
    with pytest.raises(E.EstimateError, match="config.json"):
        E.model_facts(folder)
    (folder / "transformer" / "config.json").write_text("{}")
    with pytest.raises(E.EstimateError, match="no .safetensors"):
        E.model_facts(folder)
    (folder / "transformer" / "x.safetensors").write_bytes(b"\xff" * 20)
    with pytest.raises(E.EstimateError, match="x.safetensors"):
        E.model_facts(folder)


def test_estimate_does_not_import_torch():
    code = "import sys, lorastudio.estimate; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_small_parts_read_in_megabytes_not_zero():
    """A tiny model's parts must not all read "0.0 GB" in the panel."""
    from lorastudio.estimate import GIB, approx_seconds, format_gib, format_seconds

    assert format_gib(0) == "under 1 MB"
    assert format_gib(5 * 2**20) == "5 MB"
    assert format_gib(2.5 * GIB) == "2.5 GB"
    assert format_seconds(0.001) == "under 0.1 s"
    assert approx_seconds(0.001) == "under 0.1 s" and approx_seconds(3.21) == "≈ 3.2 s"
    assert format_seconds(3.21) == "3.2 s"


def test_input_tokens_follow_the_input_size_rule():
    """``train.input_size``: an input costs the target's tokens under "target" and the
    pipeline's ~1 MP (4096 tokens) under "pipeline", whatever the resolution; "auto" is the
    family's default."""
    facts = E.ModelFacts(family="qwen-edit-plus", params=10, block_linear_params=8, block_count=1, hidden=8,
                         lora_in_out=16, largest_block_params=8)
    target = E.sequence_length(facts, 512, 2, "target")
    pipeline = E.sequence_length(facts, 512, 2, "pipeline")
    assert pipeline - target == 2 * (4096 - 1024)
    assert E.sequence_length(facts, 512, 2) == E.sequence_length(facts, 512, 2, facts.record.default_input_size)
    assert E.sequence_length(facts, 512, 2) == pipeline  # Qwen-Image-Edit-Plus's default: the pipeline's ~1 MP
    assert E.sequence_length(facts, 1024, 1, "pipeline") == E.sequence_length(facts, 1024, 1, "target")
    slow = E.estimate(facts, resolution=512, rank=4, num_inputs=2, input_size="pipeline")
    fast = E.estimate(facts, resolution=512, rank=4, num_inputs=2, input_size="target")
    assert slow.seq_len == pipeline and fast.seq_len == target and slow.activations > fast.activations


def test_joyimage_edit_plus_figures_from_the_real_config():
    """JoyAI-Image-Edit-Plus's published transformer config (40 double-stream blocks, hidden 4096 =
    32 heads × 128, Qwen3-VL-8B's 4096-wide text), built on the meta device: the "16B MMDiT" JD
    states (16.26 B), 32.5 GB of bf16 weights; an edit sample at 1024 px is the target, the reference
    at the target's size, ~64 caption tokens and the Qwen3-VL encoder's 1024 + 2 tokens of the
    reference (its ~1 MP bucket at 32 px per token)."""
    import torch
    from diffusers import JoyImageEditPlusTransformer3DModel

    with torch.device("meta"):
        model = JoyImageEditPlusTransformer3DModel(patch_size=[1, 2, 2], in_channels=16, hidden_size=4096,
                                                   num_attention_heads=32, text_dim=4096, num_layers=40,
                                                   rope_dim_list=[16, 56, 56], theta=10000)
    shapes = {n: ("BF16", tuple(p.shape)) for n, p in model.state_dict().items()}
    facts = E.facts_from("joyimage-edit-plus", dict(model.config), shapes)
    assert facts.block_count == 40 and facts.hidden == 4096 and 16.2e9 < facts.params < 16.3e9
    # per block: image and text qkv (4096 → 3·4096) and proj, both 4096 → 16384 → 4096 feed-forwards;
    # and the output projection proj_out (4096 → 16 latent channels × 1·2·2)
    assert facts.lora_in_out == (40 * (2 * (4096 + 3 * 4096 + 2 * 4096) + 2 * 2 * (4096 + 4 * 4096))
                                 + 4096 + 16 * 4)
    est = E.estimate(facts, resolution=1024, rank=16, options=E.MemoryOptions(gradient_checkpointing=True))
    assert est.seq_len == 2 * 4096 + 64 + 1026
    assert est.weights == pytest.approx(2 * facts.params, rel=0.01) and not est.fits(32)
    assert E.estimate(facts, resolution=1024, rank=16, num_inputs=0).seq_len == 4096 + 64  # text-to-image
    options, est, fits = E.fit_options(facts, 24, resolution=1024, rank=16)  # 24 GB: only with 4-bit weights
    assert fits and options.quantization == "int4"


def test_joyimage_edit_figures_from_the_real_config():
    """JoyAI-Image-Edit-Diffusers' transformer config (a JoyImageEditTransformer3DModel: 40 blocks,
    hidden 4096 = 32 heads × 128, text_dim 4096, rope_type "rope"), built on the meta device: the
    sizes of Edit-Plus's transformer (16.26 B), its one input at the target's size (the pipeline
    crops it to the output's bucket) and the Qwen3-VL encoder's 1024 + 2 tokens of it."""
    import torch
    from diffusers import JoyImageEditTransformer3DModel

    with torch.device("meta"):
        model = JoyImageEditTransformer3DModel(patch_size=[1, 2, 2], in_channels=16, hidden_size=4096,
                                               num_attention_heads=32, text_dim=4096, num_layers=40,
                                               rope_dim_list=[16, 56, 56], rope_type="rope", theta=10000)
    shapes = {n: ("BF16", tuple(p.shape)) for n, p in model.state_dict().items()}
    facts = E.facts_from("joyimage-edit", dict(model.config), shapes)
    plus = E.facts_from("joyimage-edit-plus", dict(model.config), shapes)
    assert facts.block_count == 40 and facts.hidden == 4096 and 16.2e9 < facts.params < 16.3e9
    assert facts.lora_in_out == plus.lora_in_out  # the same module names and shapes as Edit-Plus's
    for rule in ("target", "pipeline", "auto"):  # the input is on the target's grid, whatever the rule
        est = E.estimate(facts, resolution=1024, rank=16, input_size=rule,
                         options=E.MemoryOptions(gradient_checkpointing=True))
        assert est.seq_len == 2 * 4096 + 64 + 1026
        assert E.sequence_length(facts, 512, 1, rule) == 2 * 1024 + 64 + 1026
    assert E.sequence_length(plus, 512, 1, "pipeline") == 1024 + 4096 + 64 + 1026  # Edit-Plus: its ~1 MP bucket
    assert E.estimate(facts, resolution=1024, rank=16, num_inputs=0).seq_len == 4096 + 64  # text-to-image
    options, est, fits = E.fit_options(facts, 24, resolution=1024, rank=16)  # 24 GB: only with 4-bit weights
    assert fits and options.quantization == "int4"
