"""Tiny Qwen-Image models: Qwen-Image-Edit-Plus (2511 and 2509) and Qwen-Image (text-to-image)."""

from __future__ import annotations

from lorastudio.training.tiny import calibration_pixels, seeded
from lorastudio.training.tiny.tokenizers import QWEN_SPECIAL_TOKENS, tiny_qwen_processor, tiny_qwen_tokenizer

#: The VAE's latent channels (the real Qwen-Image VAE has 16). Few, so that the
#: transformer's hidden width (2 heads × 16 = 32) is at least the packed latent width
#: (channels × 2×2): a tiny model built so can learn an edit (see ``tiny/__init__``).
LATENT_CHANNELS = 4


def _qwen_components(zero_cond_t: bool = False, processor: bool = True) -> dict:
    """Qwen-Image components; the edit models add the VL ``processor``."""
    from diffusers import AutoencoderKLQwenImage, FlowMatchEulerDiscreteScheduler, QwenImageTransformer2DModel
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    tokenizer = tiny_qwen_tokenizer()
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS}
    text_dim = 32
    vl = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": (len(tokenizer) + 7) // 8 * 8, "hidden_size": text_dim, "intermediate_size": 64,
            "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
            "max_position_embeddings": 4096, "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]},
            "rope_theta": 1000000.0, "bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"],
        },
        vision_config={
            "depth": 2, "hidden_size": 16, "intermediate_size": 32, "num_heads": 2, "out_hidden_size": text_dim,
            "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 56,
            "fullatt_block_indexes": [1],
        },
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )
    components = {
        "transformer": seeded(lambda: QwenImageTransformer2DModel(
            patch_size=2, in_channels=4 * LATENT_CHANNELS, out_channels=LATENT_CHANNELS, num_layers=2,
            attention_head_dim=16, num_attention_heads=2, joint_attention_dim=text_dim, guidance_embeds=False,
            axes_dims_rope=(4, 6, 6),
            zero_cond_t=zero_cond_t,
        )),
        "vae": _vae(),
        "text_encoder": seeded(lambda: Qwen2_5_VLForConditionalGeneration(vl)),
        "tokenizer": tokenizer,
        # Qwen-Image's scheduler config (exponential time shift, dynamic on sequence length).
        "scheduler": FlowMatchEulerDiscreteScheduler(
            num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=0.9,
            base_image_seq_len=256, max_image_seq_len=8192, shift_terminal=0.02, time_shift_type="exponential",
        ),
    }
    if processor:
        components["processor"] = tiny_qwen_processor(tokenizer)
    return components


def _vae():
    """8x spatial downsampling like the real Qwen-Image VAE, fewer latent channels, and its
    own per-channel ``latents_mean``/``latents_std`` (not the identity, so a normalization
    mistake shows): measured on ``calibration_pixels`` as the real ones were."""
    import torch
    from diffusers import AutoencoderKLQwenImage

    vae = seeded(lambda: AutoencoderKLQwenImage(
        base_dim=8, z_dim=LATENT_CHANNELS, dim_mult=[1, 2, 2, 2], num_res_blocks=1,
        temperal_downsample=[False, True, True],
    ))
    with torch.no_grad():
        latents = vae.encode(calibration_pixels().unsqueeze(2)).latent_dist.mode()
    vae.register_to_config(latents_mean=[round(v, 4) for v in latents.mean(dim=(0, 2, 3, 4)).tolist()],
                           latents_std=[round(v, 4) for v in latents.std(dim=(0, 2, 3, 4)).tolist()])
    return vae


def _edit_plus(zero_cond_t: bool):
    from diffusers import QwenImageEditPlusPipeline

    return QwenImageEditPlusPipeline(**_qwen_components(zero_cond_t=zero_cond_t))


def _qwen_image():
    from diffusers import QwenImagePipeline

    return QwenImagePipeline(**_qwen_components(processor=False))


#: Family id (plus variants) → builder of its tiny pipeline. The 2511 release sets
#: zero_cond_t (input-image tokens get timestep 0); the tiny edit model does too, so the demo
#: and tests exercise that path; ``qwen-edit-plus-2509`` is the release without it.
RECIPES = {
    "qwen-edit-plus": lambda: _edit_plus(zero_cond_t=True),
    "qwen-edit-plus-2509": lambda: _edit_plus(zero_cond_t=False),
    "qwen-image": _qwen_image,
}
