"""Tiny Z-Image models: Z-Image (``ZImagePipeline``, text-to-image) and Z-Image Omni
(``ZImageOmniPipeline``, which adds a SigLIP2 vision tower and the transformer's SigLIP branch).

The real layout (Tongyi-MAI/Z-Image-Turbo): ``ZImageTransformer2DModel`` (dim 3840, 30 layers,
2 noise + 2 context refiner layers, 30 heads, RoPE axes 32/48/48 over lengths 1536/512/512,
theta 256, patch 2), FLUX.1's 16-channel ``AutoencoderKL`` (shift 0.1159, scale 0.3611), a
``Qwen3Model`` text encoder (Qwen3-4B: hidden 2560, the pipeline reads its second-to-last hidden
state), a Qwen2 tokenizer and a ``FlowMatchEulerDiscreteScheduler`` with shift 3. Omni adds
``Siglip2VisionModel`` (SigLIP2-so400m: hidden 1152 = the transformer's ``siglip_feat_dim``)
and its ``Siglip2ImageProcessor``. Everything here is that layout shrunk, with the tiny FLUX.1
VAE (``tiny.flux1``: few latent channels, its shift and scale measured so latents have unit
variance): the transformer's width (96) is above the patch-packed latent width
(``LATENT_CHANNELS`` × 2 × 2), so the LoRA can learn, and its feed-forward width
(96 · 8/3 = 256) is a multiple of 256, as the real one's (10240) is, so ComfyUI's Z-Image
model (which rounds it up to 256) builds the same layers.
"""

from __future__ import annotations

from lorastudio.training.tiny import seeded
from lorastudio.training.tiny.flux1 import LATENT_CHANNELS
from lorastudio.training.tiny.flux1 import _vae as flux1_vae
from lorastudio.training.tiny.tokenizers import tiny_qwen3_tokenizer

#: Text encoder width = the transformer's ``cap_feat_dim``.
TEXT_DIM = 32
#: SigLIP2 width = the transformer's ``siglip_feat_dim`` (Omni).
SIGLIP_DIM = 16


def _components(siglip_feat_dim: int | None) -> dict:
    from diffusers import FlowMatchEulerDiscreteScheduler, ZImageTransformer2DModel
    from transformers import Qwen3Config, Qwen3Model

    tokenizer = tiny_qwen3_tokenizer()
    qwen3 = Qwen3Config(
        vocab_size=(len(tokenizer) + 7) // 8 * 8, hidden_size=TEXT_DIM, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, head_dim=16, max_position_embeddings=1024,
        rope_theta=1000000.0, tie_word_embeddings=True,
        bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
    )
    return {
        # 2 heads × 48; the real RoPE lengths and theta, axes 12/18/18 (the real 32/48/48 in
        # proportion), two refiner layers as ComfyUI assumes.
        "transformer": _calibrated(seeded(lambda: ZImageTransformer2DModel(
            all_patch_size=(2,), all_f_patch_size=(1,), in_channels=LATENT_CHANNELS, dim=96, n_layers=2, n_refiner_layers=2,
            n_heads=2, n_kv_heads=2, norm_eps=1e-5, qk_norm=True, cap_feat_dim=TEXT_DIM,
            siglip_feat_dim=siglip_feat_dim, rope_theta=256.0, t_scale=1000.0,
            axes_dims=[12, 18, 18], axes_lens=[1536, 512, 512],
        ))),
        # Z-Image's VAE is FLUX.1's (AutoencoderKL): the tiny FLUX.1 one.
        "vae": flux1_vae(),
        "text_encoder": seeded(lambda: Qwen3Model(qwen3)),
        "tokenizer": tokenizer,
        # Z-Image-Turbo's scheduler config.
        "scheduler": FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0,
                                                     use_dynamic_shifting=False),
    }


def _calibrated(transformer):
    """The transformer with its final linear layer scaled so that its output (a velocity,
    ``x0 - noise`` for unit-variance latents and noise) has about the right spread (std √2).

    Its input is a LayerNorm's (unit variance per token) and no LoRA targets it, so a random
    frozen final layer caps the output at std ≈ 0.6 (PyTorch's default init), and no LoRA on
    the blocks could reach a velocity's scale: the real model's trained final layer has it.
    Measured on the model's own output for noise latents and a random caption, as the tiny
    VAEs' shift/scale are measured on pictures."""
    import torch

    g = torch.Generator().manual_seed(0)
    latents = [torch.randn(LATENT_CHANNELS, 1, 8, 8, generator=g) for _ in range(4)]
    captions = [torch.randn(12, TEXT_DIM, generator=g) for _ in range(4)]
    with torch.no_grad():
        out = transformer(latents, torch.rand(4, generator=g), captions, return_dict=False)[0]
        std = torch.stack(out).std().item()
        for layer in transformer.all_final_layer.values():
            layer.linear.weight.mul_(round(2 ** 0.5 / std, 4))
            layer.linear.bias.zero_()
    return transformer


def _zimage():
    from diffusers import ZImagePipeline

    return ZImagePipeline(**_components(siglip_feat_dim=None))


def _zimage_omni():
    from diffusers import ZImageOmniPipeline
    from transformers import Siglip2ImageProcessor, Siglip2VisionConfig, Siglip2VisionModel

    siglip = Siglip2VisionConfig(hidden_size=SIGLIP_DIM, intermediate_size=32, num_hidden_layers=1,
                                 num_attention_heads=2, patch_size=16, num_patches=16)
    # The real processor's patch size; a 16-patch budget (the real one: 256) keeps it tiny.
    processor = Siglip2ImageProcessor(patch_size=16, max_num_patches=16)
    return ZImageOmniPipeline(**_components(siglip_feat_dim=SIGLIP_DIM),
                              siglip=seeded(lambda: Siglip2VisionModel(siglip)), siglip_processor=processor)


#: Family id → builder of its tiny pipeline.
RECIPES = {"zimage": _zimage, "zimage-omni": _zimage_omni}
