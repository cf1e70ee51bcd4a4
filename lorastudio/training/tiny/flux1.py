"""Tiny FLUX.1 models: FLUX.1 Kontext and FLUX.1-dev (text-to-image) share one layout."""

from __future__ import annotations

from lorastudio.training.tiny import calibration_pixels, seeded
from lorastudio.training.tiny.tokenizers import tiny_clip_tokenizer, tiny_t5_tokenizer

#: The VAE's latent channels (the real FLUX.1 VAE has 16). Few, so that the transformer's
#: hidden width (32) is at least the packed latent width (channels × 2×2): a tiny model
#: built so can learn an edit, and stays as cheap to train as the test suite needs. The
#: pipelines read the channel count from the transformer's ``in_channels`` and the VAE.
LATENT_CHANNELS = 4


def _flux_components(guidance_embeds: bool = True) -> dict:
    """FLUX.1 components (shared by Kontext and FLUX.1-dev, which have the same layout)."""
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    tokenizer = tiny_clip_tokenizer()
    tokenizer_2 = tiny_t5_tokenizer()
    text_dim = 32
    clip = CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37, num_hidden_layers=1,
        num_attention_heads=4, max_position_embeddings=77, projection_dim=32, hidden_act="quick_gelu",
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=1,
    )
    t5 = T5Config(
        vocab_size=len(tokenizer_2), d_model=text_dim, d_kv=8, d_ff=37, num_layers=1, num_heads=4,
        relative_attention_num_buckets=8, relative_attention_max_distance=32, feed_forward_proj="gated-gelu",
        is_encoder_decoder=False, use_cache=False, tie_word_embeddings=False,
        pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
    )
    return {
        # Hidden width 2 heads × 16 = 32 ≥ the packed latent width 4 channels × 2×2 = 16
        # (see LATENT_CHANNELS): a narrower transformer cannot carry the noisy latents through.
        "transformer": seeded(lambda: FluxTransformer2DModel(
            patch_size=1, in_channels=4 * LATENT_CHANNELS, out_channels=None, num_layers=1, num_single_layers=1,
            attention_head_dim=16, num_attention_heads=2, joint_attention_dim=text_dim,
            pooled_projection_dim=clip.hidden_size, guidance_embeds=guidance_embeds, axes_dims_rope=(4, 6, 6),
        )),
        "vae": _vae(),
        "text_encoder": seeded(lambda: CLIPTextModel(clip)),
        "text_encoder_2": seeded(lambda: T5EncoderModel(t5)),
        "tokenizer": tokenizer,
        "tokenizer_2": tokenizer_2,
        # FLUX.1's scheduler config (dynamic shifting on the image sequence length).
        "scheduler": FlowMatchEulerDiscreteScheduler(
            num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
            base_image_seq_len=256, max_image_seq_len=4096,
        ),
    }


def _vae(latent_channels: int = LATENT_CHANNELS):
    """8x downsampling like the real FLUX VAE, fewer latent channels (LongCat-Image, whose
    pipelines hard-code 16, passes 16), and its own ``shift_factor``/``scaling_factor``:
    measured on ``calibration_pixels`` as the real VAE's were, so its latents have about
    zero mean and unit variance."""
    import torch
    from diffusers import AutoencoderKL

    vae = seeded(lambda: AutoencoderKL(
        in_channels=3, out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 16, 16), layers_per_block=1, latent_channels=latent_channels, norm_num_groups=8,
        sample_size=64, use_quant_conv=False, use_post_quant_conv=False,
    ))
    with torch.no_grad():
        latents = vae.encode(calibration_pixels()).latent_dist.mode()
    vae.register_to_config(shift_factor=round(latents.mean().item(), 4),
                           scaling_factor=round(1 / latents.std().item(), 4))
    return vae


def normalized_latents(vae, pixels):
    """``pixels`` through the tiny FLUX.1 ``vae`` as the transformer sees them: the distribution's
    mode, shifted and scaled by the constants measured in :func:`_vae` (the recipes that pretrain
    on it, LongCat's and Z-Image's, encode their pictures so)."""
    return (vae.encode(pixels).latent_dist.mode() - vae.config.shift_factor) * vae.config.scaling_factor


def _kontext():
    from diffusers import FluxKontextPipeline

    return FluxKontextPipeline(**_flux_components())


def silent_padding(text_encoder, pad_token_id: int):
    """``text_encoder`` with its padding token's input embedding zeroed (as ``nn.Embedding``'s
    ``padding_idx`` leaves it), so each padding position's output is a summary of the caption.

    The pipelines pad the prompt to 512 tokens, so a short caption is a few rows among ~500
    padding rows, and the transformer reads them all. In the real, deep encoders those rows
    carry the caption (every padding position attends to the whole prompt through many
    layers), so the transformer can read a caption wherever it looks. In a one- or two-layer
    random encoder the padding token's own embedding dominates each such row: measured on the
    tiny FLUX.1 T5, the padding rows of "a red card" and "a green card" differed by 0.4 %,
    and the random transformer's output by 1 % from one caption to the other; a LoRA trained
    on three captions painted their average (each output closest to another set's target).
    With the padding embedding zeroed each padding row is the encoder's mix of the real
    tokens (they differ by ~100 % between those captions) and the LoRA learns every caption
    (tests/training/test_learning_t2i.py)."""
    import torch

    with torch.no_grad():
        text_encoder.get_input_embeddings().weight[pad_token_id] = 0
    return text_encoder


def _flux():
    from diffusers import FluxPipeline

    components = _flux_components()
    silent_padding(components["text_encoder_2"], components["tokenizer_2"].pad_token_id)
    return FluxPipeline(**components)


#: Family id → builder of its tiny pipeline.
RECIPES = {"kontext": _kontext, "flux": _flux}
