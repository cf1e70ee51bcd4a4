"""A tiny random-weight Qwen3-VL model folder, for testing ``lorastudio caption`` offline.

The real class (``Qwen3VLForConditionalGeneration``) and processor (``Qwen3VLProcessor``:
Qwen2-VL image processor with Qwen3-VL's 16-pixel patches and 0.5 mean/std) built from a
small config with seeded weights, saved with ``save_pretrained`` as a normal model folder
(``config.json``, safetensors, processor files, chat template), so it loads through the
same code path as a downloaded Qwen3-VL. It reuses the tiny Qwen tokenizer and chat template
of :mod:`lorastudio.training.tiny`. A tiny Qwen2.5-VL needs no builder: the tiny
Qwen-Image-Edit-Plus pipeline's ``text_encoder`` + ``processor`` is one.
"""

from __future__ import annotations

from pathlib import Path

from lorastudio.training.tiny import quiet_libraries, seeded
from lorastudio.training.tiny.tokenizers import QWEN_CHAT_TEMPLATE, QWEN_SPECIAL_TOKENS, tiny_qwen_tokenizer


def tiny_qwen3_vl():
    """(model, processor) of a tiny Qwen3-VL: 2 text layers of width 32, a 2-block vision tower."""
    from transformers import Qwen2VLImageProcessor, Qwen3VLConfig, Qwen3VLForConditionalGeneration, Qwen3VLProcessor
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

    tokenizer = tiny_qwen_tokenizer()
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS}
    config = Qwen3VLConfig(
        text_config={
            "vocab_size": (len(tokenizer) + 7) // 8 * 8, "hidden_size": 32, "intermediate_size": 64,
            "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16,
            "max_position_embeddings": 4096,
            "rope_parameters": {"rope_type": "default", "rope_theta": 5000000.0, "mrope_section": [2, 3, 3],
                                "mrope_interleaved": True},
            "bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"],
        },
        vision_config={"depth": 2, "hidden_size": 16, "intermediate_size": 32, "num_heads": 2, "patch_size": 16,
                       "out_hidden_size": 32, "num_position_embeddings": 64, "deepstack_visual_indexes": [1]},
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )
    # The real processor's patch/merge sizes and normalization; a tiny pixel budget (as the
    # tiny Qwen2.5-VL processor) so the vision tower sees a handful of patches.
    image_processor = Qwen2VLImageProcessor(patch_size=16, merge_size=2, min_pixels=64 * 64, max_pixels=128 * 128,
                                            image_mean=[0.5] * 3, image_std=[0.5] * 3)
    video_processor = Qwen3VLVideoProcessor(patch_size=16, merge_size=2)
    processor = Qwen3VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                 video_processor=video_processor, chat_template=QWEN_CHAT_TEMPLATE)
    return seeded(lambda: Qwen3VLForConditionalGeneration(config)), processor


def build_tiny_qwen3_vl(out_dir: Path) -> Path:
    """Save the tiny Qwen3-VL (model + processor) as a model folder at ``out_dir``."""
    out_dir = Path(out_dir)
    with quiet_libraries():
        model, processor = tiny_qwen3_vl()
        model.save_pretrained(out_dir, safe_serialization=True)
        processor.save_pretrained(out_dir)
    return out_dir
