"""Tiny random-weight models, one per family, saved as ordinary local diffusers folders.

Nothing can be downloaded where LoRA Studio is tested (and the demo must run on a fresh
machine with no model at all), so every family gets a miniature of its real model: the
SAME component classes (``FluxTransformer2DModel``, ``AutoencoderKL``, ``CLIPTextModel``,
``T5EncoderModel``, ``QwenImageTransformer2DModel``, ``AutoencoderKLQwenImage``,
``Qwen2_5_VLForConditionalGeneration`` …) built from small configs with seeded random
weights, and saved through the real pipeline class's ``save_pretrained`` (safetensors plus
``model_index.json``). The folder therefore loads through exactly the code path a real
FLUX.1-Kontext-dev or Qwen-Image-Edit-2509 folder takes, and the family's diffusers
pipeline runs on it end to end.

Tokenizers are built in memory with the ``tokenizers`` library (through the transformers
classes' own ``vocab``/``merges`` constructors, which wrap a ``tokenizers`` BPE or Unigram
model): a byte-level alphabet plus merges learned, deterministically, from a small corpus
holding the pipelines' prompt templates and the demo captions, so those tokenize to whole
words much as they do with the real vocabularies. Each folder is a few MB and builds in
seconds; the same seed gives the same weights.
"""

from __future__ import annotations

import collections
import contextlib
import re
import shutil
import string
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import torch

#: Seed used for every tiny model (each component re-seeds, so they do not depend on order).
SEED = 0

#: Text the tiny vocabularies are learned from: the pipelines' prompt templates (so the
#: Qwen template prefix tokenizes to about as many tokens as with the real tokenizer, which
#: matters because the pipeline drops a fixed number of leading tokens) and common
#: caption words, including the demo's.
_CORPUS = """
<|im_start|>system
Describe the key features of the input image (color, shape, size, texture, objects, background), then explain how the user's text instruction should alter or modify the image. Generate a new image that meets the user's requirements while maintaining consistency with the original input where appropriate.<|im_end|>
<|im_start|>user
Picture 1: <|vision_start|><|image_pad|><|vision_end|>Picture 2: Picture 3: <|im_end|>
<|im_start|>assistant
<|im_start|>system
Describe the image by detailing the color, shape, size, texture, quantity, text, spatial relationships of the objects and background:<|im_end|>
<|im_start|>user
invert the colours and mirror the image. invert the colors and flip the image horizontally.
a photo of a cat, a dog, a person, a woman, a man, a house, a tree, a car, a flower, a red circle,
a green square, a blue triangle, a yellow star on a white background in the style of a painting.
make it look like a watercolor, turn the sky into night, remove the background, add glasses and a hat.
place the glasses from the second image and the hat from the third image on the woman in the first image.
recreate the portrait with this style; keep the face the same. zkw sks ohwx
"""


# -- tokenizers --------------------------------------------------------------------------------


def _corpus_segments() -> list[str]:
    """The corpus cut at special tokens (``<|...|>``), which are never split into merges."""
    return [seg for seg in re.split(r"<\|[a-z_]+\|>", _CORPUS) if seg]


def _learn_merges(words: Iterable[tuple[str, ...]], max_merges: int = 5000) -> list[tuple[str, str]]:
    """Byte-pair merges learned from ``words`` (tuples of symbols), deterministically.

    Each round merges the most frequent adjacent pair (ties: the lexicographically
    smallest), until every word is a single symbol: plain BPE training, small enough to
    write out here so the result never depends on a library's tie-breaking.
    """
    counts = collections.Counter(tuple(w) for w in words if w)
    merges: list[tuple[str, str]] = []
    while len(merges) < max_merges:
        pairs: collections.Counter[tuple[str, str]] = collections.Counter()
        for word, n in counts.items():
            for pair in zip(word, word[1:]):
                pairs[pair] += n
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        merged: collections.Counter[tuple[str, ...]] = collections.Counter()
        for word, n in counts.items():
            out: list[str] = []
            i = 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(word[i] + word[i + 1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            merged[tuple(out)] += n
        counts = merged
    return merges


def _byte_alphabet() -> list[str]:
    """The 256 printable stand-ins byte-level BPE uses for bytes, in byte order."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    return list(bytes_to_unicode().values())


def tiny_clip_tokenizer():
    """A ``CLIPTokenizer`` (tokenizers-backed) with CLIP's layout: bytes, bytes+``</w>``,
    merges, then ``<|startoftext|>``/``<|endoftext|>`` last, ``model_max_length`` 77."""
    from transformers import CLIPTokenizer

    probe = CLIPTokenizer()  # only for its normalizer and pre-tokenizer
    backend = probe.backend_tokenizer
    words = []
    for segment in _corpus_segments():
        text = backend.normalizer.normalize_str(segment)
        for piece, _ in backend.pre_tokenizer.pre_tokenize_str(text):
            words.append((*piece[:-1], piece[-1] + "</w>"))
    merges = _learn_merges(words)
    alphabet = _byte_alphabet()
    tokens = alphabet + [c + "</w>" for c in alphabet] + ["".join(m) for m in merges]
    tokens = list(dict.fromkeys(tokens)) + ["<|startoftext|>", "<|endoftext|>"]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)


def tiny_t5_tokenizer():
    """A ``T5TokenizerFast`` over a ``tokenizers`` Unigram model (no sentencepiece file, so
    loading it never needs the sentencepiece package): ``<pad>``=0, ``</s>``=1,
    ``<unk>``=2 as in T5, single characters as fallback pieces, corpus words as whole
    pieces, and T5's 100 ``<extra_id_N>`` sentinels."""
    from transformers import T5TokenizerFast

    pieces: dict[str, float] = {"▁": -2.0}
    text = " ".join(_corpus_segments())
    chars = sorted((set(text) | set(string.ascii_letters + string.digits + string.punctuation)) - set(string.whitespace))
    for c in chars:
        pieces.setdefault(c, -10.0)
        pieces.setdefault("▁" + c, -9.0)
    for word in sorted(set(re.findall(r"\w+|[^\w\s]", text))):
        pieces.setdefault("▁" + word, -3.0 - 0.01 * len(word))
        pieces.setdefault(word, -4.0 - 0.01 * len(word))
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), *pieces.items()]
    vocab += [(f"<extra_id_{i}>", 0.0) for i in range(99, -1, -1)]
    return T5TokenizerFast(vocab=vocab, extra_ids=100, model_max_length=512)


#: The Qwen2 / Qwen2.5-VL special tokens, in the real vocabulary's order; the VL processor
#: and the edit pipelines' prompt templates use ``<|im_start|>``, ``<|im_end|>``,
#: ``<|vision_start|>``, ``<|image_pad|>``, ``<|vision_end|>``.
QWEN_SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
)

#: A shortened Qwen2-VL chat template (text and image parts), so ``apply_chat_template``
#: works on the tiny processor as on the real one.
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def tiny_qwen_tokenizer():
    """A ``Qwen2TokenizerFast``: byte-level BPE with merges learned from the corpus (split
    by Qwen2's own pre-tokenizer regex) and the Qwen2-VL special tokens after the BPE
    vocabulary, as in the real one."""
    from transformers import Qwen2TokenizerFast

    probe = Qwen2TokenizerFast()
    pre = probe.backend_tokenizer.pre_tokenizer
    words = []
    for segment in _corpus_segments():
        words += [tuple(piece) for piece, _ in pre.pre_tokenize_str(segment)]
    merges = _learn_merges(words)
    tokens = list(dict.fromkeys(_byte_alphabet() + ["".join(m) for m in merges]))
    tokens += [t for t in QWEN_SPECIAL_TOKENS if t not in tokens]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    tokenizer = Qwen2TokenizerFast(
        vocab=vocab, merges=merges, model_max_length=32768, errors="replace",
        extra_special_tokens={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>",
                              "vision_bos_token": "<|vision_start|>", "vision_eos_token": "<|vision_end|>"},
    )
    tokenizer.add_special_tokens({"additional_special_tokens": list(QWEN_SPECIAL_TOKENS[1:])})
    tokenizer.chat_template = QWEN_CHAT_TEMPLATE
    return tokenizer


#: Qwen3's chat template, shortened: the Qwen2 template plus the empty thinking block
#: Qwen3 writes after the assistant turn when ``enable_thinking=False`` (which
#: ``Flux2KleinPipeline`` passes), so the tiny tokenizer yields the same token layout.
QWEN3_CHAT_TEMPLATE = QWEN_CHAT_TEMPLATE.replace(
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}"
    "{% endif %}",
)


def tiny_qwen3_tokenizer():
    """The tiny Qwen tokenizer with Qwen3's ``<think>``/``</think>`` tokens and chat template
    (FLUX.2 [klein]'s text encoder is Qwen3)."""
    tokenizer = tiny_qwen_tokenizer()
    tokenizer.add_tokens(["<think>", "</think>"], special_tokens=True)
    tokenizer.chat_template = QWEN3_CHAT_TEMPLATE
    return tokenizer


def tiny_qwen_processor(tokenizer):
    """The ``Qwen2VLProcessor`` the edit pipeline feeds condition images through.

    Real settings (patch 14, merge 2, temporal patch 2, CLIP mean/std) except the pixel
    budget: ``max_pixels`` is capped at 112² so the tiny vision tower sees a handful of
    patches whatever size the pipeline hands it (the real budget is 12.8 MP).
    """
    from transformers import Qwen2VLImageProcessor, Qwen2VLProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    image_processor = Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=112 * 112)
    video_processor = Qwen2VLVideoProcessor(min_pixels=56 * 56, max_pixels=112 * 112)
    return Qwen2VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                            video_processor=video_processor, chat_template=QWEN_CHAT_TEMPLATE)


# -- components ----------------------------------------------------------------------------


def _seeded(build: Callable[[], torch.nn.Module]) -> torch.nn.Module:
    torch.manual_seed(SEED)
    return build().eval()


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
        "transformer": _seeded(lambda: FluxTransformer2DModel(
            patch_size=1, in_channels=64, out_channels=None, num_layers=1, num_single_layers=1,
            attention_head_dim=16, num_attention_heads=2, joint_attention_dim=text_dim,
            pooled_projection_dim=clip.hidden_size, guidance_embeds=guidance_embeds, axes_dims_rope=(4, 6, 6),
        )),
        # 16 latent channels and 8x downsampling like the real FLUX VAE; its shift/scale too.
        "vae": _seeded(lambda: AutoencoderKL(
            in_channels=3, out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
            block_out_channels=(8, 8, 16, 16), layers_per_block=1, latent_channels=16, norm_num_groups=8,
            sample_size=64, scaling_factor=0.3611, shift_factor=0.1159,
            use_quant_conv=False, use_post_quant_conv=False,
        )),
        "text_encoder": _seeded(lambda: CLIPTextModel(clip)),
        "text_encoder_2": _seeded(lambda: T5EncoderModel(t5)),
        "tokenizer": tokenizer,
        "tokenizer_2": tokenizer_2,
        # FLUX.1's scheduler config (dynamic shifting on the image sequence length).
        "scheduler": FlowMatchEulerDiscreteScheduler(
            num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
            base_image_seq_len=256, max_image_seq_len=4096,
        ),
    }


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
        "transformer": _seeded(lambda: QwenImageTransformer2DModel(
            patch_size=2, in_channels=64, out_channels=16, num_layers=2, attention_head_dim=16,
            num_attention_heads=2, joint_attention_dim=text_dim, guidance_embeds=False, axes_dims_rope=(4, 6, 6),
            zero_cond_t=zero_cond_t,
        )),
        # 16 latent channels, 8x spatial downsampling, the real per-channel mean/std (defaults).
        "vae": _seeded(lambda: AutoencoderKLQwenImage(
            base_dim=8, z_dim=16, dim_mult=[1, 2, 2, 2], num_res_blocks=1,
            temperal_downsample=[False, True, True],
        )),
        "text_encoder": _seeded(lambda: Qwen2_5_VLForConditionalGeneration(vl)),
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


#: Mistral's control tokens (the real tekken vocabulary's first entries) that the FLUX.2
#: [dev] prompt template and the Pixtral processor use.
MISTRAL_SPECIAL_TOKENS = ("<unk>", "<s>", "</s>", "[INST]", "[/INST]", "[IMG]", "<pad>", "[IMG_BREAK]",
                          "[IMG_END]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]")

#: Mistral-Small-3.1's chat layout, shortened to text parts: ``<s>[SYSTEM_PROMPT]…
#: [/SYSTEM_PROMPT][INST]…[/INST]`` (what ``Flux2Pipeline`` renders its prompt through).
MISTRAL_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% set text = message['content'] if message['content'] is string else message['content']"
    " | selectattr('type', 'equalto', 'text') | map(attribute='text') | join('') %}"
    "{% if message['role'] == 'system' %}[SYSTEM_PROMPT]{{ text }}[/SYSTEM_PROMPT]"
    "{% elif message['role'] == 'user' %}[INST]{{ text }}[/INST]"
    "{% else %}{{ text }}{{ eos_token }}{% endif %}{% endfor %}"
)


def tiny_mistral_processor():
    """The ``PixtralProcessor`` FLUX.2 [dev] loads as its ``tokenizer``: a byte-level BPE
    tokenizer (merges learned from the corpus, Mistral's control tokens first, as in
    tekken) built in memory with ``tokenizers``, a Pixtral image processor with a tiny
    pixel budget, and the chat template above."""
    from tokenizers import Tokenizer, decoders, models
    from transformers import PixtralImageProcessor, PixtralProcessor, PreTrainedTokenizerFast, Qwen2TokenizerFast

    pre = Qwen2TokenizerFast().backend_tokenizer.pre_tokenizer  # byte-level, GPT-style splitting
    words = []
    for segment in _corpus_segments():
        words += [tuple(piece) for piece, _ in pre.pre_tokenize_str(segment)]
    merges = _learn_merges(words)
    tokens = list(MISTRAL_SPECIAL_TOKENS) + list(dict.fromkeys(_byte_alphabet() + ["".join(m) for m in merges]))
    backend = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges, unk_token="<unk>"))
    backend.pre_tokenizer = pre
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>",
                                        unk_token="<unk>", pad_token="<pad>", model_max_length=32768,
                                        extra_special_tokens={"image_token": "[IMG]"})
    tokenizer.add_special_tokens({"additional_special_tokens": list(MISTRAL_SPECIAL_TOKENS[3:])})
    image_processor = PixtralImageProcessor(patch_size=14, size={"longest_edge": 112})
    return PixtralProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=14,
                            chat_template=MISTRAL_CHAT_TEMPLATE, image_token="[IMG]")


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
            "text_encoder": _seeded(lambda: Mistral3ForConditionalGeneration(config)),
            "tokenizer": processor}


def _flux2_image_components(text_hidden: int, guidance_embeds: bool) -> dict:
    """The transformer, VAE and scheduler FLUX.2 [dev] and [klein] share; they differ only in
    the guidance embedding (dev has one, klein not) and in the text encoder's width (the
    pipeline stacks three of its hidden states, hence ``3 * text_hidden``)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, Flux2Transformer2DModel

    return {
        "transformer": _seeded(lambda: Flux2Transformer2DModel(
            patch_size=1, in_channels=128, num_layers=1, num_single_layers=1, attention_head_dim=16,
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
    """``AutoencoderKLFlux2`` in miniature: 8x downsampling and 32 latent channels like the
    real one (so 128 channels after the 2×2 patchify), and batch-norm statistics that are
    not the identity, so a latent normalization mistake shows in the tests."""
    from diffusers import AutoencoderKLFlux2

    def build():
        vae = AutoencoderKLFlux2(
            in_channels=3, out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
            block_out_channels=(8, 8, 16, 16), layers_per_block=1, latent_channels=32, norm_num_groups=8,
            sample_size=64, use_quant_conv=False, use_post_quant_conv=False,
        )
        g = torch.Generator().manual_seed(SEED)
        with torch.no_grad():
            vae.bn.running_mean.copy_(torch.rand(vae.bn.running_mean.shape, generator=g) - 0.5)
            vae.bn.running_var.copy_(0.5 + 1.5 * torch.rand(vae.bn.running_var.shape, generator=g))
        return vae

    return _seeded(build)


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
            "text_encoder": _seeded(lambda: Qwen3ForCausalLM(qwen3)),
            "tokenizer": tokenizer}


def _pipeline_builders() -> dict[str, Callable[[], object]]:
    from diffusers import (Flux2KleinPipeline, Flux2Pipeline, FluxKontextPipeline, FluxPipeline,
                           QwenImageEditPlusPipeline, QwenImagePipeline)

    return {
        "kontext": lambda: FluxKontextPipeline(**_flux_components()),
        "flux": lambda: FluxPipeline(**_flux_components()),
        # The 2511 release sets zero_cond_t (input-image tokens get timestep 0); the tiny
        # edit model does too, so the demo and tests exercise that path.
        "qwen-edit-plus": lambda: QwenImageEditPlusPipeline(**_qwen_components(zero_cond_t=True)),
        "qwen-edit-plus-2509": lambda: QwenImageEditPlusPipeline(**_qwen_components(zero_cond_t=False)),
        "qwen-image": lambda: QwenImagePipeline(**_qwen_components(processor=False)),
        # A "base" (not step-distilled) Klein: previews exercise true CFG.
        "flux2-klein": lambda: Flux2KleinPipeline(**_flux2_klein_components(), is_distilled=False),
        "flux2": lambda: Flux2Pipeline(**_flux2_components()),
    }


#: Family ids (plus variants) that have a tiny model.
TINY_FAMILIES = ("kontext", "flux", "qwen-edit-plus", "qwen-edit-plus-2509", "qwen-image", "flux2-klein", "flux2")


def build_tiny_pipeline(family: str):
    """The tiny pipeline object in memory (what :func:`build_tiny_model` saves)."""
    builders = _pipeline_builders()
    if family not in builders:
        raise ValueError(f"no tiny model for family {family!r}; known: {', '.join(TINY_FAMILIES)}")
    return builders[family]()


@contextlib.contextmanager
def _quiet_libraries() -> Iterator[None]:
    """No progress bars or info chatter from transformers/diffusers while building: the
    demo prints its own short report."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    saved = [(lib, lib.get_verbosity(), lib.is_progress_bar_enabled())
             for lib in (transformers_logging, diffusers_logging)]
    for lib, _, _ in saved:
        lib.set_verbosity_error()
        lib.disable_progress_bar()
    try:
        yield
    finally:
        for lib, verbosity, bars in saved:
            lib.set_verbosity(verbosity)
            if bars:
                lib.enable_progress_bar()


def build_tiny_model(family: str, out_dir: Path) -> Path:
    """Write the tiny model of ``family`` as a diffusers folder at ``out_dir``; returns it.

    Saved through the real pipeline class's ``save_pretrained`` (safetensors only), so it
    has the real layout: ``model_index.json``, ``transformer/``, ``vae/``, the text
    encoder(s) and tokenizer(s), ``scheduler/``, and for Qwen edit models ``processor/``.
    Written to a temporary sibling folder and renamed, so a half-built folder never
    looks like a model. An existing ``out_dir`` is replaced only if it is empty or a
    diffusers model folder (has ``model_index.json``); anything else is refused
    (FileExistsError) rather than deleted.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / "model_index.json").is_file():
        raise FileExistsError(f"{out_dir} exists and is not a model folder; not replacing it")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        with _quiet_libraries():
            build_tiny_pipeline(family).save_pretrained(tmp, safe_serialization=True)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def folder_size(path: Path) -> int:
    """Bytes in all files under ``path`` (for the report and the size test)."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())
