"""The "small" random FLUX.1 Kontext model for ``train_speed.py --model small``.

The tiny demo transformer (1 double + 1 single block, 2 heads × 16) is so small that a
64-px step is dominated by per-call overhead (Python, peft wrappers, the optimizer's
per-tensor loop), not by the matmuls a real model spends its time in. The small one has
4 double + 8 single blocks with 4 heads × 32 (hidden 128), so at 128 px with 512 padded
T5 tokens (the pipeline's default, and diffusers' Kontext training script's) the
transformer's work is what a step mostly costs, as on a real model.

Built from the tiny Kontext pipeline (same VAE, text encoders, tokenizers, scheduler:
``lorastudio.training.tiny.build_tiny_pipeline``) with the transformer swapped, and saved with the
pipeline's own ``save_pretrained``, so it is an ordinary diffusers folder the trainer
loads like any other. Random weights, seeded: the same folder on every build.
"""

from __future__ import annotations

from pathlib import Path

#: 4 double-stream + 8 single-stream blocks, 4 heads × 32 (hidden 128); RoPE axes sum to 32.
SMALL_TRANSFORMER = dict(patch_size=1, in_channels=64, out_channels=None, num_layers=4, num_single_layers=8,
                         attention_head_dim=32, num_attention_heads=4, guidance_embeds=True,
                         axes_dims_rope=(8, 12, 12))


def build_small_kontext(out_dir: Path) -> Path:
    """Write the small Kontext model folder at ``out_dir`` (replaced if it is a model folder)."""
    import torch
    from diffusers import FluxTransformer2DModel

    from lorastudio.training.tiny import build_tiny_pipeline, save_pipeline_folder

    out_dir = Path(out_dir)
    if (out_dir / "model_index.json").is_file():
        return out_dir
    pipe = build_tiny_pipeline("kontext")
    torch.manual_seed(0)
    text = pipe.text_encoder_2.config.d_model
    pooled = pipe.text_encoder.config.hidden_size
    transformer = FluxTransformer2DModel(**SMALL_TRANSFORMER, joint_attention_dim=text,
                                         pooled_projection_dim=pooled).eval()
    pipe.register_modules(transformer=transformer)
    return save_pipeline_folder(pipe, out_dir)
