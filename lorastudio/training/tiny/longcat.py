"""Tiny LongCat-Image models: LongCat-Image-Edit and LongCat-Image (text-to-image) share one layout.

The real folders (meituan-longcat/LongCat-Image-Edit, LongCat-Image, LongCat-Image-Dev) hold a
``LongCatImageTransformer2DModel`` (FLUX.1's block layout: 10 double-stream + 20 single-stream
blocks, 24 heads × 128, ``joint_attention_dim`` 3584 = Qwen2.5-VL-7B's width), FLUX.1's
16-channel ``AutoencoderKL``, a ``Qwen2_5_VLForConditionalGeneration`` text encoder with its
``Qwen2Tokenizer`` and a ``Qwen2VLProcessor`` (``text_processor``: the edit pipeline feeds the
input image through it), and FLUX.1's dynamic-shift ``FlowMatchEulerDiscreteScheduler``. The
tiny model has the same classes; the Qwen2.5-VL encoder, tokenizer and processor are the tiny
Qwen-Image ones (``tiny/qwen.py``), so both lines test the same VL code, with the padding
token's embedding zeroed (``tiny.flux1.silent_padding``): both pipelines pad the caption to 512
tokens (a fixed ``tokenizer_max_length`` no config changes), and the padding rows of the tiny
two-layer encoder were otherwise its padding embedding, 1 % apart from caption to caption.
The transformer is as narrow as the packed latents allow: every step runs the ~512 text rows.
"""

from __future__ import annotations

from lorastudio.training.tiny import seeded


def _longcat_components() -> dict:
    from diffusers import FlowMatchEulerDiscreteScheduler, LongCatImageTransformer2DModel

    from lorastudio.training.tiny.flux1 import _vae as flux_vae
    from lorastudio.training.tiny.flux1 import silent_padding
    from lorastudio.training.tiny.qwen import _qwen_components

    qwen = _qwen_components(processor=True)
    text_dim = qwen["text_encoder"].config.text_config.hidden_size
    return {
        # 2 heads × 32 = 64, the packed latent width (16 channels × 2×2 = 64), so a LoRA
        # can learn an edit (see tiny/__init__); axes_dims_rope sums to the head dim, as
        # (16, 56, 56) does to 128.
        "transformer": seeded(lambda: LongCatImageTransformer2DModel(
            patch_size=1, in_channels=64, num_layers=1, num_single_layers=1, attention_head_dim=32,
            num_attention_heads=2, joint_attention_dim=text_dim, pooled_projection_dim=text_dim,
            axes_dims_rope=(8, 12, 12),
        )),
        # FLUX.1's VAE (LongCat ships its config) with 16 latent channels, which the LongCat
        # pipelines hard-code, and shift/scale measured as the tiny FLUX.1 VAE's are.
        "vae": flux_vae(latent_channels=16),
        # Both pipelines pad the caption to 512 tokens: the padding rows must carry it.
        "text_encoder": silent_padding(qwen["text_encoder"], qwen["tokenizer"].pad_token_id),
        "tokenizer": qwen["tokenizer"],
        "text_processor": qwen["processor"],
        # LongCat's scheduler config (FLUX.1's: dynamic shift on the image sequence length).
        "scheduler": FlowMatchEulerDiscreteScheduler(
            num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
            base_image_seq_len=256, max_image_seq_len=4096,
        ),
    }


def _edit():
    from diffusers import LongCatImageEditPipeline

    return LongCatImageEditPipeline(**_longcat_components())


def _text_to_image():
    from diffusers import LongCatImagePipeline

    return LongCatImagePipeline(**_longcat_components())


#: Family id → builder of its tiny pipeline.
RECIPES = {"longcat-edit": _edit, "longcat": _text_to_image}
