"""Tiny Qwen-Image 2.1 (``QwenImage21Pipeline``): the real component classes, shrunk.

Qwen-Image 2.1's parts are a Qwen3-VL text encoder that sees prompt and condition images
together (``Qwen3VLForConditionalGeneration`` with its ``Qwen3VLProcessor``), a 64-channel,
16x RGBA VAE (``AutoencoderKLQwenImage21``) and a single-stream block-causal transformer
(``QwenImage21Transformer2DModel``, latents unpatched: one token per 16x16 pixels).

The tiny VAE has 8 latent channels (normalized to unit variance on fixed pictures, see
``tiny/__init__``); the transformer is 2 heads x 16 = 32 wide, so its hidden width is at
least the packed latent width (8 channels: 2.1 packs no 2x2 patches), as the tiny models'
rule asks; its shared modulation is scaled so the blocks' gates are open (``_with_open_gates``).
The processor keeps the real patch
layout (16 px patches, 2x2 merge: one vision slot per 32x32 pixels, i.e. per 2x2 latent
tokens, which the transformer relies on) with a small ``shortest_edge`` so the test sizes
(64-128 px) are not upscaled.
"""

from __future__ import annotations

from lorastudio.training.tiny import calibration_pixels, seeded
from lorastudio.training.tiny.tokenizers import QWEN_SPECIAL_TOKENS, tiny_qwen_tokenizer

#: Latent channels of the tiny VAE (the real one has 64).
LATENT_CHANNELS = 8


def tiny_qwen3_vl_processor(tokenizer):
    """The ``Qwen3VLProcessor`` the pipeline tokenizes prompt and condition images with:
    the real patch size (16), merge (2) and temporal patch (2); a pixel budget small enough
    for the tiny test images (the real one starts at 256²)."""
    from transformers import Qwen2VLImageProcessor, Qwen3VLProcessor
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

    size = {"shortest_edge": 32 * 32, "longest_edge": 512 * 512}
    image_processor = Qwen2VLImageProcessor(patch_size=16, merge_size=2, temporal_patch_size=2, size=size,
                                            image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
    video_processor = Qwen3VLVideoProcessor(patch_size=16, merge_size=2, temporal_patch_size=2, size=size)
    return Qwen3VLProcessor(image_processor=image_processor, tokenizer=tokenizer, video_processor=video_processor,
                            chat_template=tokenizer.chat_template)


def _vae():
    """16x spatial downsampling and RGBA in and out like the real Qwen-Image 2.1 VAE, fewer
    latent channels, and its own per-channel ``latents_mean``/``latents_std`` measured on
    ``calibration_pixels`` (opaque: alpha 1), as the real ones were, so latents have about
    unit variance."""
    import torch
    from diffusers import AutoencoderKLQwenImage21

    vae = seeded(lambda: AutoencoderKLQwenImage21(
        base_dim=8, decoder_base_dim=8, z_dim=LATENT_CHANNELS, dim_mult=[1, 2, 2, 2, 2], num_res_blocks=1,
        temperal_downsample=[False, True, True, True],
    ))
    pixels = calibration_pixels()
    rgba = torch.cat([pixels, torch.ones_like(pixels[:, :1])], dim=1)
    with torch.no_grad():
        latents = vae.encode(rgba.unsqueeze(2)).latent_dist.mode()
    vae.register_to_config(latents_mean=[round(v, 4) for v in latents.mean(dim=(0, 2, 3, 4)).tolist()],
                           latents_std=[round(v, 4) for v in latents.std(dim=(0, 2, 3, 4)).tolist()])
    return vae


#: Factor on the tiny transformer's shared ``modulation`` weights (see :func:`_with_open_gates`).
MODULATION_GAIN = 20.0


def _with_open_gates(transformer):
    """The transformer with its shared ``modulation`` weights ×:data:`MODULATION_GAIN`.

    Every block adds ``tanh(gate) · attention`` and ``tanh(gate) · MLP`` to its input, the
    gates computed by one ``modulation`` Linear from the timestep embedding. At random init
    that embedding is small (std ≈ 0.1), so every gate is tanh(≈0.02): the blocks hardly
    touch the sequence, the target's output is its own noisy tokens through ``img_in`` and
    ``proj_out``, and neither the input image nor the caption reaches it (measured: swapping
    the input image moved the output 0.4 %). A trained model's gates are open; ×20 gives
    |tanh(gate)| ≈ 0.3–0.5 (t = 0 … 1), and the same swap then moves the output ~5 %."""
    import torch

    with torch.no_grad():
        transformer.modulation[1].weight.mul_(MODULATION_GAIN)
    return transformer


def _qwen_image21():
    from diffusers import FlowMatchEulerDiscreteScheduler, QwenImage21Pipeline, QwenImage21Transformer2DModel
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    tokenizer = tiny_qwen_tokenizer()
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS}
    text_dim = 32
    vl = Qwen3VLConfig(
        text_config={
            "vocab_size": (len(tokenizer) + 7) // 8 * 8, "hidden_size": text_dim, "intermediate_size": 64,
            "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16,
            "max_position_embeddings": 4096,
            "rope_parameters": {"rope_type": "default", "rope_theta": 5000000.0, "mrope_section": [2, 3, 3],
                                "mrope_interleaved": True},
            "bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"],
        },
        vision_config={
            "depth": 2, "hidden_size": 16, "intermediate_size": 32, "num_heads": 2, "out_hidden_size": text_dim,
            "patch_size": 16, "spatial_merge_size": 2, "temporal_patch_size": 2, "num_position_embeddings": 64,
            "deepstack_visual_indexes": [1],
        },
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )
    transformer = seeded(lambda: _with_open_gates(QwenImage21Transformer2DModel(
        patch_size=1, in_channels=LATENT_CHANNELS, out_channels=LATENT_CHANNELS, num_layers=2,
        attention_head_dim=16, num_attention_heads=2, context_in_dim=text_dim, mlp_ratio=3,
        axes_dims_rope=(4, 6, 6), causal_condition=True,
    )))
    return QwenImage21Pipeline(
        transformer=transformer, vae=_vae(), text_encoder=seeded(lambda: Qwen3VLForConditionalGeneration(vl)),
        processor=tiny_qwen3_vl_processor(tokenizer),
        scheduler=FlowMatchEulerDiscreteScheduler(
            num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
            base_image_seq_len=256, max_image_seq_len=4096, time_shift_type="exponential",
        ),
    )


#: Family id → builder of its tiny pipeline.
RECIPES = {"qwen-image-2.1": _qwen_image21}
