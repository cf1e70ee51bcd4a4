"""Tokenizers and processors for the tiny models, built in memory (no download, no vocab files).

Built with the ``tokenizers`` library (through the transformers classes' own
``vocab``/``merges`` constructors, which wrap a ``tokenizers`` BPE or Unigram model): a
byte-level alphabet plus merges learned, deterministically, from a small corpus holding the
pipelines' prompt templates and the demo captions, so those tokenize to whole words much as
they do with the real vocabularies.
"""

from __future__ import annotations

import collections
import re
import string
from collections.abc import Iterable

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
