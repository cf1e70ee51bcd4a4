"""Tiny JoyImage-Edit-Plus (``JoyImageEditPlusPipeline``): the real component classes, shrunk.

The real folder (jdopensource/JoyAI-Image-Edit-Plus-Diffusers) holds a
``JoyImageEditPlusTransformer3DModel`` (40 double-stream blocks, hidden 4096 = 32 heads × 128,
patch 1×2×2, RoPE axes 16/56/56, theta 10000, text_dim 4096), Wan 2.1's 16-channel
``AutoencoderKLWan``, a ``Qwen3VLForConditionalGeneration`` text encoder (Qwen3-VL-8B, width 4096)
with its ``Qwen2Tokenizer`` and ``Qwen3VLProcessor``, and a ``FlowMatchEulerDiscreteScheduler``.
Here: the same classes, with the tiny Qwen3-VL of ``tiny_vl`` (text width 32, the real 16-pixel
patches merged 2×2, a small pixel budget), a Wan VAE with 4 latent channels whose per-channel
``latents_mean``/``latents_std`` are measured on ``calibration_pixels`` (as the real ones were),
and a transformer 2 heads × 32 = 64 wide, four times the packed latent width (4 channels × 2×2),
its RoPE axes 8/12/12 (the real 16/56/56 in proportion) and the real theta. Its final layer is
scaled so its output has a velocity's spread (see ``tiny.zimage._calibrated``: a random frozen
projection after a LayerNorm caps it far lower). It passes the learning measure (0.12 after 300
quick-recipe steps, README) since the LoRA targets ``proj_out`` too.

JoyImage-Edit (``JoyImageEditPipeline``, jdopensource/JoyAI-Image-Edit-Diffusers) has the same
component classes but its own transformer class, ``JoyImageEditTransformer3DModel``, with the
same real sizes (40 blocks, 4096 = 32 × 128, patch 1×2×2, RoPE 16/56/56, theta 10000, text_dim
4096, ``rope_type`` "rope"); its tiny twin is shrunk the same way. That pipeline VAE-encodes the
reference with ``latent_dist.sample()``, not the mode, so its tiny VAE gets what a trained VAE
has and a random one lacks: a narrow posterior (:func:`_narrow_posterior`).
"""

from __future__ import annotations

from lorastudio.training.tiny import calibration_pixels, seeded

#: Latent channels of the tiny Wan VAE (the real one has 16).
LATENT_CHANNELS = 4
#: Width of the tiny Qwen3-VL's text model (= the transformer's ``text_dim``).
TEXT_DIM = 32


def _vae():
    """Wan 2.1's VAE layout, 8× spatial, fewer channels, normalization measured on fixed pictures."""
    import torch
    from diffusers import AutoencoderKLWan

    vae = seeded(lambda: AutoencoderKLWan(base_dim=8, z_dim=LATENT_CHANNELS, dim_mult=[1, 2, 2, 2], num_res_blocks=1,
                                          temperal_downsample=[False, True, True]))
    with torch.no_grad():
        latents = vae.encode(calibration_pixels().unsqueeze(2)).latent_dist.mode()
    vae.register_to_config(latents_mean=[round(v, 4) for v in latents.mean(dim=(0, 2, 3, 4)).tolist()],
                           latents_std=[round(v, 4) for v in latents.std(dim=(0, 2, 3, 4)).tolist()])
    return vae


def _calibrated(transformer):
    """The transformer with ``proj_out`` scaled so that its output (a velocity, ``noise - x0``
    for unit-variance latents and noise) has about the right spread (std √2), measured on the
    model's own output for noise latents and random text, as the VAE's constants are measured."""
    import inspect

    import torch

    g = torch.Generator().manual_seed(0)
    patches = torch.randn(2, 32, LATENT_CHANNELS, 1, 2, 2, generator=g)
    text = torch.randn(2, 12, TEXT_DIM, generator=g)
    timestep = torch.rand(2, generator=g) * 1000
    with torch.no_grad():
        if "shape_list" not in inspect.signature(transformer.forward).parameters:  # Edit: (B, items, C, t, h, w)
            out = transformer(hidden_states=patches.reshape(2, 1, LATENT_CHANNELS, 1, 8, 16), timestep=timestep,
                              encoder_hidden_states=text, return_dict=False)[0]
        else:  # Edit-Plus: one patch sequence, its parts' shapes, a text mask
            out = transformer(hidden_states=patches, timestep=timestep, encoder_hidden_states=text,
                              encoder_hidden_states_mask=torch.ones(2, 12, dtype=torch.long),
                              shape_list=[[(1, 4, 8)]] * 2, return_dict=False)[0]
        transformer.proj_out.weight.mul_(round(2 ** 0.5 / out.std().item(), 4))
        transformer.proj_out.bias.zero_()
    return transformer


def _joyimage_edit_plus():
    from diffusers import FlowMatchEulerDiscreteScheduler, JoyImageEditPlusPipeline, JoyImageEditPlusTransformer3DModel

    from lorastudio.training.tiny_vl import tiny_qwen3_vl

    text_encoder, processor = tiny_qwen3_vl()
    transformer = _calibrated(seeded(lambda: JoyImageEditPlusTransformer3DModel(
        patch_size=[1, 2, 2], in_channels=LATENT_CHANNELS, hidden_size=64, num_attention_heads=2, text_dim=TEXT_DIM,
        mlp_width_ratio=4.0, num_layers=2, rope_dim_list=[8, 12, 12], theta=10000,
    )))
    return JoyImageEditPlusPipeline(
        transformer=transformer, vae=_vae(), text_encoder=text_encoder, tokenizer=processor.tokenizer,
        processor=processor, scheduler=FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0),
    )


def _narrow_posterior(vae, spread: float = 0.01):
    """The VAE with a posterior standard deviation of ``spread`` × each channel's latent spread
    (``latents_std``): ``quant_conv``'s log-variance half made constant. A trained VAE's samples
    sit close to its mode; a random one's posterior is as wide as unit noise (std ≈ 1, twenty times
    its latents' spread here), so a pipeline that samples the reference (JoyImage-Edit's
    ``prepare_latents``) would see noise instead of the picture."""
    import math

    import torch

    channels = vae.config.z_dim
    with torch.no_grad():
        conv = vae.quant_conv
        conv.weight[channels:].zero_()
        conv.bias[channels:] = torch.tensor([2 * math.log(spread * s) for s in vae.config.latents_std])
    return vae


def _joyimage_edit():
    from diffusers import FlowMatchEulerDiscreteScheduler, JoyImageEditPipeline, JoyImageEditTransformer3DModel

    from lorastudio.training.tiny_vl import tiny_qwen3_vl

    text_encoder, processor = tiny_qwen3_vl()
    transformer = _calibrated(seeded(lambda: JoyImageEditTransformer3DModel(
        patch_size=[1, 2, 2], in_channels=LATENT_CHANNELS, hidden_size=64, num_attention_heads=2, text_dim=TEXT_DIM,
        mlp_width_ratio=4.0, num_layers=2, rope_dim_list=[8, 12, 12], rope_type="rope", theta=10000,
    )))
    return JoyImageEditPipeline(
        transformer=transformer, vae=_narrow_posterior(_vae()), text_encoder=text_encoder,
        tokenizer=processor.tokenizer, processor=processor,
        scheduler=FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0),
    )


#: Family id → builder of its tiny pipeline.
RECIPES = {"joyimage-edit-plus": _joyimage_edit_plus, "joyimage-edit": _joyimage_edit}
