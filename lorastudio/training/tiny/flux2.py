"""Tiny FLUX.2 models: FLUX.2 [dev] (Mistral3 text encoder) and FLUX.2 [klein] (Qwen3)."""

from __future__ import annotations

import torch

from lorastudio.training.tiny import calibration_pixels, pretrain, pretrained, seeded
from lorastudio.training.tiny.tokenizers import MISTRAL_SPECIAL_TOKENS, tiny_mistral_processor, tiny_qwen3_tokenizer

#: The VAE's latent channels (the real FLUX.2 VAE has 32, so 128 after patchifying). Few,
#: so that the transformer's hidden width (2 heads × 16 = 32) is at least the packed latent
#: width (channels × 2×2 = 16): a tiny model built so can learn an edit (see ``tiny/__init__``).
LATENT_CHANNELS = 4

#: The tiny transformers' pretraining (:func:`_pretrain_to_follow_its_reference`), [dev] and
#: [klein] alike: full-batch AdamW steps and learning rate. Measured under load on a 2-core box,
#: the quick-recipe LoRA's ratio after 300 steps on [klein]: 0.81 from the random transformer;
#: pretrained (with 512 text tokens) 30 steps at 2e-2: 0.55, 40: 0.70, 60: 0.26, 80: 0.12 (60
#: steps of 4 pictures instead of all 12: 0.95). The ratio is not monotonic in the steps, so 80:
#: past the region where it jumps. With :data:`PRETRAIN_TEXT_TOKENS`: [klein] 60: 0.39, 80: 0.19
#: (0.19–0.33 at the measure's seeds 0–3), 100: 0.27; [dev] (its guidance drawn as
#: :func:`_pretrain_guidance` draws it) after 200 LoRA steps 0.10–0.24 at seeds 0–3.
PRETRAIN_STEPS = 80
PRETRAIN_LEARNING_RATE = 1e-2
#: Its caption: generic, unlike any learning test's.
PRETRAIN_CAPTION = "a picture"
#: Its text tokens, padding included: enough for [dev]'s 98 (the pipeline's system message and
#: the caption; [klein]'s are 19). Training and previews pad to 512, but the text stream is
#: then almost all of the pretraining's cost (20 image tokens beside it): 512 tokens took 50 s
#: of one thread per model under heavy load, 128 take 11 s.
PRETRAIN_TEXT_TOKENS = 128


def _flux2_components() -> dict:
    """FLUX.2 [dev] components: Mistral3 (Mistral-Small-3.1 layout) text encoder with 30
    layers (the pipeline stacks hidden states 10, 20 and 30), a guidance-embedded FLUX.2
    transformer, and the Pixtral processor as tokenizer."""
    from transformers import Mistral3Config, Mistral3ForConditionalGeneration

    processor = tiny_mistral_processor()
    ids = {t: processor.tokenizer.convert_tokens_to_ids(t) for t in MISTRAL_SPECIAL_TOKENS}
    hidden = 16
    config = Mistral3Config(
        text_config={
            "model_type": "mistral", "vocab_size": (len(processor.tokenizer) + 7) // 8 * 8, "hidden_size": hidden,
            "intermediate_size": 32, "max_position_embeddings": 1024, "num_attention_heads": 2,
            "num_hidden_layers": 30, "num_key_value_heads": 1, "head_dim": 8, "rms_norm_eps": 1e-5,
            "rope_theta": 1000000000.0, "sliding_window": None,
            "bos_token_id": ids["<s>"], "eos_token_id": ids["</s>"], "pad_token_id": ids["<pad>"],
        },
        vision_config={
            "model_type": "pixtral", "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
            "intermediate_size": 32, "image_size": 112, "patch_size": 14, "num_channels": 3, "head_dim": 8,
        },
        image_token_index=ids["[IMG]"], vision_feature_layer=-1, spatial_merge_size=2,
        projector_hidden_act="gelu", multimodal_projector_bias=False,
    )
    return {**_flux2_image_components(hidden, guidance_embeds=True),
            "text_encoder": seeded(lambda: Mistral3ForConditionalGeneration(config)),
            "tokenizer": processor}


def _flux2_image_components(text_hidden: int, guidance_embeds: bool) -> dict:
    """The transformer, VAE and scheduler FLUX.2 [dev] and [klein] share; they differ only in
    the guidance embedding (dev has one, klein not) and in the text encoder's width (the
    pipeline stacks three of its hidden states, hence ``3 * text_hidden``)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, Flux2Transformer2DModel

    return {
        "transformer": seeded(lambda: Flux2Transformer2DModel(
            patch_size=1, in_channels=4 * LATENT_CHANNELS, num_layers=1, num_single_layers=1, attention_head_dim=16,
            num_attention_heads=2, joint_attention_dim=3 * text_hidden, timestep_guidance_channels=256,
            axes_dims_rope=(4, 4, 4, 4), guidance_embeds=guidance_embeds,
        )),
        "vae": _flux2_vae(),
        "scheduler": FlowMatchEulerDiscreteScheduler(
            num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
            base_image_seq_len=256, max_image_seq_len=4096,
        ),
    }


def _flux2_vae():
    """``AutoencoderKLFlux2`` in miniature: 8x downsampling like the real one, fewer latent
    channels (``LATENT_CHANNELS``, ×4 after the 2×2 patchify), and batch-norm statistics
    that are not the identity, so a latent normalization mistake shows in the tests."""
    from diffusers import AutoencoderKLFlux2, Flux2Pipeline

    def build():
        vae = AutoencoderKLFlux2(
            in_channels=3, out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
            block_out_channels=(8, 8, 16, 16), layers_per_block=1, latent_channels=LATENT_CHANNELS, norm_num_groups=8,
            sample_size=64, use_quant_conv=False, use_post_quant_conv=False,
        )
        # The batch-norm statistics of its patchified latents, measured on calibration_pixels
        # as the real VAE's running statistics were (not the identity).
        with torch.no_grad():
            latents = vae.encode(calibration_pixels()).latent_dist.mode()
            patched = Flux2Pipeline._patchify_latents(latents)
            vae.bn.running_mean.copy_(patched.mean(dim=(0, 2, 3)))
            vae.bn.running_var.copy_(patched.var(dim=(0, 2, 3)))
        return vae

    return seeded(build)


def _flux2_klein_components() -> dict:
    """FLUX.2 [klein] components: Qwen3 text encoder (27 layers, because the pipeline stacks
    hidden states 9, 18 and 27), the FLUX.2 transformer without guidance embedding."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    tokenizer = tiny_qwen3_tokenizer()
    hidden = 16
    qwen3 = Qwen3Config(
        vocab_size=(len(tokenizer) + 7) // 8 * 8, hidden_size=hidden, intermediate_size=32, num_hidden_layers=27,
        num_attention_heads=2, num_key_value_heads=1, head_dim=8, max_position_embeddings=1024,
        rope_theta=1000000.0, tie_word_embeddings=True,
        bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
    )
    return {**_flux2_image_components(hidden, guidance_embeds=False),
            "text_encoder": seeded(lambda: Qwen3ForCausalLM(qwen3)),
            "tokenizer": tokenizer}


def _pretrain_guidance(count: int, generator: torch.Generator) -> torch.Tensor:
    """FLUX.2 [dev]'s guidance embedding for ``count`` pretraining pictures: uniform between
    the value training feeds and the one previews use (``Flux2Family.train_guidance`` 1.0,
    ``sample_guidance`` 4.0). A real [dev] is guidance-distilled over that range, so what it
    does at 1.0 it does at 4.0 too; pretrained at 1.0 alone, the tiny one's embedding of 4.0
    stays random, and a LoRA trained at 1.0 is measured on a model it never saw."""
    from lorastudio.training.families.flux2 import Flux2Family

    low, high = Flux2Family.train_guidance, Flux2Family.sample_guidance
    return low + (high - low) * torch.rand(count, generator=generator)


def _pretrain_to_follow_its_reference(pipe) -> None:
    """Train ``pipe.transformer`` (every parameter) a little on the identity edit of
    :func:`calibration_pixels`: each picture its own reference (64 px, the pipeline's smallest
    reference) and target (32 px), the flow-matching velocity loss at logit-normal σ, exactly
    the call the pipeline makes (tokens, ids, σ as the timestep; [dev]'s guidance embedding
    over the range training and previews feed it, :func:`_pretrain_guidance`).

    Why: a LoRA on the catalog's targets changes only the transformer blocks, and a real
    FLUX.2 comes with a trained output side (``proj_out``, ``norm_out`` and its modulation,
    the embedders) that already follows its reference; a random tiny one does not, so its
    LoRA would have to learn the whole denoiser (measured on the random tiny [klein]:
    training every parameter takes the loss from ~2.2 to 0.26 in 200 steps, the blocks
    alone only to 1.80). The loop is :func:`tiny.pretrain`'s (seeded, one thread)."""
    import torch.nn.functional as F

    pipe_class, transformer = type(pipe), pipe.transformer
    with torch.no_grad():
        pictures = calibration_pixels(64)
        references = pipe._encode_vae_image(pictures, None)
        targets = pipe._encode_vae_image(F.interpolate(pictures, size=(32, 32), mode="area"), None)
        prompt_embeds, text_ids = pipe.encode_prompt(PRETRAIN_CAPTION, device=torch.device("cpu"),
                                                      max_sequence_length=PRETRAIN_TEXT_TOKENS)
    count = len(pictures)
    prompt_embeds, text_ids = prompt_embeds.expand(count, -1, -1), text_ids.expand(count, -1, -1)
    img_ids = torch.cat([pipe_class._prepare_latent_ids(targets),
                         pipe_class._prepare_image_ids([references[:1]]).expand(count, -1, -1)], dim=1)
    reference_tokens = pipe_class._pack_latents(references)

    def velocity(noisy: torch.Tensor, sigmas: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        guidance = _pretrain_guidance(count, generator) if transformer.config.guidance_embeds else None
        tokens = pipe_class._pack_latents(noisy)
        return transformer(
            hidden_states=torch.cat([tokens, reference_tokens], dim=1), timestep=sigmas, guidance=guidance,
            encoder_hidden_states=prompt_embeds, txt_ids=text_ids, img_ids=img_ids, return_dict=False,
        )[0][:, : tokens.shape[1]]

    pretrain(transformer, [(targets, velocity, pipe_class._pack_latents)], PRETRAIN_STEPS, PRETRAIN_LEARNING_RATE)


def _flux2():
    from diffusers import Flux2Pipeline

    pipe = Flux2Pipeline(**_flux2_components())
    pretrained("flux2", pipe.transformer, lambda: _pretrain_to_follow_its_reference(pipe))
    return pipe


def _flux2_klein():
    from diffusers import Flux2KleinPipeline

    # A "base" (not step-distilled) Klein: previews exercise true CFG.
    pipe = Flux2KleinPipeline(**_flux2_klein_components(), is_distilled=False)
    pretrained("flux2-klein", pipe.transformer, lambda: _pretrain_to_follow_its_reference(pipe))
    return pipe


#: Family id → builder of its tiny pipeline.
RECIPES = {"flux2": _flux2, "flux2-klein": _flux2_klein}
