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
model (which rounds it up to 256) builds the same layers. Both transformers are briefly
pretrained (:func:`_pretrain`), as the tiny FLUX.2's and LongCat's are; the result ships
(``tiny.pretrained``).
"""

from __future__ import annotations

import torch

from lorastudio.training.tiny import calibration_pixels, pretrain, pretrained, seeded
from lorastudio.training.tiny.flux1 import LATENT_CHANNELS
from lorastudio.training.tiny.flux1 import _vae as flux1_vae
from lorastudio.training.tiny.flux1 import normalized_latents
from lorastudio.training.tiny.tokenizers import tiny_qwen3_tokenizer

#: Text encoder width = the transformer's ``cap_feat_dim``.
TEXT_DIM = 32
#: SigLIP2 width = the transformer's ``siglip_feat_dim`` (Omni).
SIGLIP_DIM = 16

#: The tiny transformers' pretraining (:func:`_pretrain`): full-batch AdamW steps per family and
#: learning rate. Measured under load on a 2-core box, at the measure's seeds 0–3: Z-Image's LoRA
#: (lr 1e-2) after 150 steps 0.33–0.37 on the one pretrained 80 steps (the shipped weights), each
#: output nearer its own target than any other by ≥ 85 % (pretrained 40 steps: 0.40–0.43, by ≥ 9 %;
#: 160 steps: 0.50–0.57, a fail); Omni's edit LoRA (lr 1e-2) after 100 steps 0.14–0.22 pretrained
#: 80 steps, by ≥ 120 % (lr 2e-2: 0.43–0.69, not own-closest at three seeds; pretrained 160 steps, lr
#: 2e-2: 0.13–0.15). The random models needed 300 (Z-Image, lr 3e-3) and 400 (Omni) steps.
#: Pretraining takes ~11 s (Z-Image) and ~35 s (Omni) of one thread under load, paid by
#: ``tools/pretrain_tiny_transformers.py``.
PRETRAIN_STEPS = {"zimage": 80, "zimage-omni": 80}
PRETRAIN_LEARNING_RATE = 1e-2
#: The pictures' side per family: the learning tests' target size (Z-Image's trains 64 px, Omni's
#: 32 px, its references enlarged to :data:`REFERENCE_SIDE`).
PRETRAIN_SIZE = {"zimage": 64, "zimage-omni": 32}
#: ZImageOmniPipeline's smallest reference side (the family's ``min_reference_side``).
REFERENCE_SIDE = 64
#: Its caption: generic, unlike any learning test's.
PRETRAIN_CAPTION = "a picture"


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


def _pretrain(pipe, family: str) -> None:
    """Pretrain ``pipe.transformer`` (:func:`tiny.pretrain`, every parameter) on
    :func:`calibration_pixels` through the transformer call the pipeline's ``__call__`` makes:
    Z-Image on denoising them, Omni on their identity edit (each picture its own reference, as
    VAE latents with the clean flag and as the SigLIP2 features ``prepare_siglip_embeds``
    computes, enlarged to the pipeline's smallest reference side as the learning test's are).
    One generic caption, encoded by the pipeline's ``encode_prompt``. The model is called as the
    pipelines call it: ``t = 1 - σ`` and the output negated (it predicts ``x0 - noise``).

    Why: a LoRA changes the blocks, and a real Z-Image comes with a trained output side (the
    final layer and its adaLN modulation, the embedders and refiners); a random tiny one does not,
    so its LoRA had to learn the whole denoiser (300 / 400 LoRA steps)."""
    from PIL import Image

    transformer, vae, omni = pipe.transformer, pipe.vae, family == "zimage-omni"
    pictures = calibration_pixels(PRETRAIN_SIZE[family])
    with torch.no_grad():
        targets = normalized_latents(vae, pictures)
        if omni:
            references = [picture.resize((REFERENCE_SIDE, REFERENCE_SIDE), Image.Resampling.LANCZOS)
                          for picture in pipe.image_processor.postprocess(pictures, output_type="pil")]
            reference_latents = normalized_latents(vae, torch.cat([pipe.image_processor.preprocess(
                r, height=REFERENCE_SIDE, width=REFERENCE_SIDE) for r in references])).unsqueeze(2)
            siglip = [pipe.prepare_siglip_embeds([r], batch_size=1, device=torch.device("cpu"),
                                                 dtype=torch.float32)[0][0] for r in references]
            segments = pipe.encode_prompt(PRETRAIN_CAPTION, do_classifier_free_guidance=False,
                                          num_condition_images=1)[0][0]
            extra = {"cap_feats": [list(segments) for _ in pictures],
                     "siglip_feats": [[feats, None] for feats in siglip],
                     "image_noise_mask": [[0, 1] for _ in pictures]}
        else:
            caption = pipe.encode_prompt(PRETRAIN_CAPTION, do_classifier_free_guidance=False)[0][0]
            extra = {"cap_feats": [caption for _ in pictures]}

    def velocity(noisy: torch.Tensor, sigmas: torch.Tensor, _generator: torch.Generator) -> torch.Tensor:
        x = list(noisy.unsqueeze(2).unbind(0))
        if omni:
            x = [[reference, target] for reference, target in zip(reference_latents.unbind(0), x)]
        out = transformer(x=x, t=1.0 - sigmas, return_dict=False, **extra)[0]
        return -torch.stack(out).squeeze(2)

    def unpacked(x: torch.Tensor) -> torch.Tensor:  # the transformer patchifies them itself
        return x

    pretrain(transformer, [(targets, velocity, unpacked)], PRETRAIN_STEPS[family], PRETRAIN_LEARNING_RATE)


def _zimage():
    from diffusers import ZImagePipeline

    pipe = ZImagePipeline(**_components(siglip_feat_dim=None))
    pretrained("zimage", pipe.transformer, lambda: _pretrain(pipe, "zimage"))
    return pipe


def _zimage_omni():
    from diffusers import ZImageOmniPipeline
    from transformers import Siglip2ImageProcessor, Siglip2VisionConfig, Siglip2VisionModel

    siglip = Siglip2VisionConfig(hidden_size=SIGLIP_DIM, intermediate_size=32, num_hidden_layers=1,
                                 num_attention_heads=2, patch_size=16, num_patches=16)
    # The real processor's patch size; a 16-patch budget (the real one: 256) keeps it tiny.
    processor = Siglip2ImageProcessor(patch_size=16, max_num_patches=16)
    pipe = ZImageOmniPipeline(**_components(siglip_feat_dim=SIGLIP_DIM),
                              siglip=seeded(lambda: Siglip2VisionModel(siglip)), siglip_processor=processor)
    pretrained("zimage-omni", pipe.transformer, lambda: _pretrain(pipe, "zimage-omni"))
    return pipe


#: Family id → builder of its tiny pipeline.
RECIPES = {"zimage": _zimage, "zimage-omni": _zimage_omni}
