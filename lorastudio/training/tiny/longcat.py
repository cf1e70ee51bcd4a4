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
It is briefly pretrained (:func:`_pretrain`), as the tiny FLUX.2 [klein]'s is; the result ships
(``tiny.pretrained``).
"""

from __future__ import annotations

import sys

import torch

from lorastudio.training.tiny import calibration_pixels, pretrain, pretrained, seeded

#: The tiny transformers' pretraining (:func:`_pretrain`, each model on its own mode): full-batch
#: AdamW steps per family, learning rate, the pictures' side (the learning tests' quick recipe
#: trains 32 px). Measured (under load, seeds 0–3 of the measure): the edit LoRA's ratio after
#: 300 steps 0.24–0.29 on the one pretrained 80 steps (0.57 on the random one), after 150 at
#: lr 1e-2 0.29–0.38 (pretrained 40 steps: 0.82–1.35); the text-to-image LoRA's after 300 steps,
#: in the call without CFG, 0.26–0.35 when pretrained 160 steps, 0.38–0.51 when pretrained 80
#: (not a pass at every seed), 0.67–0.78 when pretrained 80 at lr 2e-2, 0.45–0.55 when pretrained
#: 160 on 6 of the 12 pictures. The caption stays padded to the pipelines' 512 rows, which are
#: almost all of the cost (~0.5 s of one thread a step), unlike the tiny FLUX.2's pretraining
#: (128): pretrained on 128 rows, the edit LoRA reached 0.31–0.52 and the text-to-image one
#: 0.48–0.69 (the image tokens' positions start after the caption's rows, at 512 in the pipeline).
PRETRAIN_STEPS = {"longcat-edit": 80, "longcat": 160}
PRETRAIN_LEARNING_RATE = 1e-2
PRETRAIN_SIZE = 32
#: Its caption: generic, unlike any learning test's.
PRETRAIN_CAPTION = "a picture"


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


def _pretrain(pipe, steps: int) -> None:
    """Pretrain ``pipe.transformer`` (:func:`tiny.pretrain`, as the tiny FLUX.2 [klein]'s) on
    :func:`calibration_pixels` in the pipeline's own mode, through the transformer call its
    ``__call__`` makes: the edit model on their identity edit (each picture its own input, on
    the target's grid, the caption encoded with the VL encoder's view of that input as the
    pipeline makes it), the text-to-image model on denoising them. One generic caption.

    Why: a LoRA on FLUX1_TARGETS changes the blocks and ``proj_out``, and a real LongCat comes
    with a trained output side (``norm_out`` and its modulation, the embedders); a random tiny
    one does not, and its LoRAs learned slowly (the edit passed only after 600 steps, the
    text-to-image one not at all, its outputs near the targets' average)."""
    from lorastudio.training.tiny.flux1 import normalized_latents

    module = sys.modules[type(pipe).__module__]
    edit, transformer, vae = hasattr(pipe, "image_processor_vl"), pipe.transformer, pipe.vae
    with torch.no_grad():
        pictures = calibration_pixels(PRETRAIN_SIZE)
        latents = normalized_latents(vae, pictures)
        if edit:  # the pipeline's view for its VL encoder: the input at ~1 MP, then halved
            width, height = module.calculate_dimensions(1024 * 1024, 1.0)
            views = [pipe.image_processor.resize(pipe.image_processor.resize(picture, height, width),
                                                 height // 2, width // 2)
                     for picture in pipe.image_processor.postprocess(pictures, output_type="pil")]
            prompt_embeds = torch.cat([pipe.encode_prompt(PRETRAIN_CAPTION, image=v)[0] for v in views])
        else:
            prompt_embeds = pipe.encode_prompt(PRETRAIN_CAPTION)[0].expand(len(pictures), -1, -1)
    batch, channels, height, width = latents.shape
    length = prompt_embeds.shape[1]

    def pack(x: torch.Tensor) -> torch.Tensor:
        return pipe._pack_latents(x, batch, channels, height, width)

    def ids(modality: int) -> torch.Tensor:
        return module.prepare_pos_ids(modality_id=modality, type="image", start=(length, length),
                                      height=height // 2, width=width // 2)

    text_ids = module.prepare_pos_ids(modality_id=0, type="text", start=(0, 0), num_token=length)
    input_tokens = [pack(latents)] if edit else []
    img_ids = torch.cat([ids(1), ids(2)] if edit else [ids(1)])

    def velocity(noisy: torch.Tensor, sigmas: torch.Tensor, _generator: torch.Generator) -> torch.Tensor:
        tokens = pack(noisy)
        return transformer(
            hidden_states=torch.cat([tokens, *input_tokens], dim=1), timestep=sigmas, guidance=None,
            encoder_hidden_states=prompt_embeds, txt_ids=text_ids, img_ids=img_ids, return_dict=False,
        )[0][:, : tokens.shape[1]]

    pretrain(transformer, [(latents, velocity, pack)], steps, PRETRAIN_LEARNING_RATE)


def _edit():
    from diffusers import LongCatImageEditPipeline

    pipe = LongCatImageEditPipeline(**_longcat_components())
    pretrained("longcat-edit", pipe.transformer, lambda: _pretrain(pipe, PRETRAIN_STEPS["longcat-edit"]))
    return pipe


def _text_to_image():
    from diffusers import LongCatImagePipeline

    pipe = LongCatImagePipeline(**_longcat_components())
    pretrained("longcat", pipe.transformer, lambda: _pretrain(pipe, PRETRAIN_STEPS["longcat"]))
    return pipe


#: Family id → builder of its tiny pipeline.
RECIPES = {"longcat-edit": _edit, "longcat": _text_to_image}
