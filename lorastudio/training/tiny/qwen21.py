"""Tiny Qwen-Image 2.1 (``QwenImage21Pipeline``): the real component classes, shrunk.

Qwen-Image 2.1's parts are a Qwen3-VL text encoder that sees prompt and condition images
together (``Qwen3VLForConditionalGeneration`` with its ``Qwen3VLProcessor``), a 64-channel,
16x RGBA VAE (``AutoencoderKLQwenImage21``) and a single-stream block-causal transformer
(``QwenImage21Transformer2DModel``, latents unpatched: one token per 16x16 pixels).

The tiny VAE has 8 latent channels (normalized to unit variance on fixed pictures, see
``tiny/__init__``); the transformer is 2 heads x 16 = 32 wide, so its hidden width is at
least the packed latent width (8 channels: 2.1 packs no 2x2 patches), as the tiny models'
rule asks. Its transformer is briefly pretrained when it is built, in both modes, on the
calibration pictures (:func:`_pretrain_to_denoise`: a real 2.1's shared modulation, embedders
and output norm are trained, and a LoRA cannot train them). The processor keeps the real patch
layout (16 px patches, 2x2 merge: one vision slot per 32x32 pixels, i.e. per 2x2 latent
tokens, which the transformer relies on) with a small ``shortest_edge`` so the test sizes
(64-128 px) are not upscaled.
"""

from __future__ import annotations

from lorastudio.training.tiny import calibration_pixels, pretrain, pretrained, seeded
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


#: The tiny transformer's pretraining (:func:`_pretrain_to_denoise`): full-batch AdamW steps and
#: learning rate. Measured under load on a 2-core box, the learning test's LoRA (200 steps at
#: lr 1e-2) at the measure's seeds 0-3: pretrained 80 steps, ratio 0.10-0.21 (edit) and
#: 0.05-0.09 (text-to-image), each output nearer its own target than any other by 221 % /
#: 340 % at least; pretrained 60 or 120 steps, it passes as well (62 % the smallest margin). The
#: random transformer with its gates scaled open by hand needed 600 steps and still flipped
#: with the seed. ~6 s of CPU on one thread (10-20 s wall on the loaded 2-core box), part of
#: building the model.
PRETRAIN_STEPS = 80
PRETRAIN_LEARNING_RATE = 1e-2
#: Its caption: generic, unlike any learning test's.
PRETRAIN_CAPTION = "a picture"
#: Its pictures' side: the learning tests' size (2x2 target tokens, one vision slot per input).
PRETRAIN_SIZE = 32


def _pretrain_to_denoise(pipe) -> None:
    """Train ``pipe.transformer`` (every parameter) a little in both of its modes on
    :func:`calibration_pixels`: each picture the identity edit of itself (its own input image)
    and, from the caption alone, the text-to-image target; the flow-matching velocity loss at
    logit-normal σ, in exactly the call the pipeline makes (the prompt from its own
    ``encode_prompt``, inputs first and the target last, σ as the timestep); both modes in each of
    :func:`tiny.pretrain`'s steps.

    Why: a LoRA on the catalog's targets changes the blocks and ``proj_out``; a real Qwen-Image
    2.1 comes with the rest trained (the embedders, ``norm_out`` and the one shared
    ``modulation`` whose gates scale every block's attention and MLP). At random init that
    modulation's gates are tanh(≈0.02): the blocks hardly touch the sequence, so neither the
    input image nor the caption reaches the target's tokens (swapping the input moved the output
    0.4 %) and no LoRA learned an edit. Pretrained, the gates are open (|tanh| 0.15-0.45 over
    t = 0 … 1) and the same swap moves the output ~19 %. Seeded and one thread, so the same
    weights every build."""
    import torch

    transformer, pack = pipe.transformer, pipe._pack_latents
    device = torch.device("cpu")
    pictures = calibration_pixels(PRETRAIN_SIZE)
    count = len(pictures)
    with torch.no_grad():
        rgba = torch.cat([pictures, torch.ones_like(pictures[:, :1])], dim=1).unsqueeze(2)  # the VAE reads RGBA
        latents = pipe._encode_vae_image(rgba, None)[:, :, 0]
        images = pipe.image_processor.postprocess(pictures, output_type="pil")
        edit = [pipe.encode_prompt(prompt=PRETRAIN_CAPTION, image=[image], device=device) for image in images]
        text_only = pipe.encode_prompt(prompt=PRETRAIN_CAPTION, device=device)
    _, channels, height, width = latents.shape
    targets = pack(latents, count, channels, height, width)
    target_slots = torch.ones(count, height * width // 4, dtype=torch.bool)  # one slot per 2x2 target tokens
    shape = (1, height, width)
    # Mode → (input tokens, the transformer's prompt arguments).
    modes = {
        "edit": (targets, {"encoder_hidden_states": torch.cat([e[0] for e in edit]),
                           "img_mask": torch.cat([torch.cat([e[2] for e in edit]), target_slots], dim=1),
                           "img_shapes": [[shape, shape]] * count}),
        "text-to-image": (targets[:, :0], {"encoder_hidden_states": text_only[0].expand(count, -1, -1),
                                           "img_mask": torch.cat([text_only[2].expand(count, -1), target_slots], 1),
                                           "img_shapes": [[shape]] * count}),
    }

    def velocity_in(inputs: torch.Tensor, prompt: dict):
        def velocity(noisy: torch.Tensor, sigmas: torch.Tensor, _generator: torch.Generator) -> torch.Tensor:
            return transformer(hidden_states=torch.cat([inputs, noisy], dim=1), timestep=sigmas,
                               return_dict=False, **prompt)[0][:, -noisy.shape[1]:]
        return velocity

    def packed(x: torch.Tensor) -> torch.Tensor:  # the targets are packed already
        return x

    pretrain(transformer, [(targets, velocity_in(inputs, prompt), packed) for inputs, prompt in modes.values()],
             PRETRAIN_STEPS, PRETRAIN_LEARNING_RATE)


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
    transformer = seeded(lambda: QwenImage21Transformer2DModel(
        patch_size=1, in_channels=LATENT_CHANNELS, out_channels=LATENT_CHANNELS, num_layers=2,
        attention_head_dim=16, num_attention_heads=2, context_in_dim=text_dim, mlp_ratio=3,
        axes_dims_rope=(4, 6, 6), causal_condition=True,
    ))
    pipe = QwenImage21Pipeline(
        transformer=transformer, vae=_vae(), text_encoder=seeded(lambda: Qwen3VLForConditionalGeneration(vl)),
        processor=tiny_qwen3_vl_processor(tokenizer),
        scheduler=FlowMatchEulerDiscreteScheduler(
            num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
            base_image_seq_len=256, max_image_seq_len=4096, time_shift_type="exponential",
        ),
    )
    pretrained("qwen-image-2.1", pipe.transformer, lambda: _pretrain_to_denoise(pipe))
    return pipe


#: Family id → builder of its tiny pipeline.
RECIPES = {"qwen-image-2.1": _qwen_image21}
