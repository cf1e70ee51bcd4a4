"""Drafting a caption with a local Qwen2.5-VL / Qwen3-VL: load it, show it the set, decode.

Everything goes through transformers' own classes and the folder's own files: the
processor (``AutoProcessor``: image processor, tokenizer, chat template), the model class
the folder's ``config.json`` names (``Qwen2_5_VLForConditionalGeneration`` /
``Qwen3VLForConditionalGeneration``), ``local_files_only=True``: nothing comes from a hub.

Memory: 8- and 4-bit loading use the same bitsandbytes layers as the trainer's
``train.quantization`` (LLM.int8 with threshold 6.0 / NF4), through transformers' own
``BitsAndBytesConfig``, the library's supported way to load one of its models that way;
it runs on the CPU too (bitsandbytes ≥ 0.46), so the tests take the GPU's code path.

Cancelling: a stopping criterion checks the stop signal after every generated token, so a
stop takes effect within one token, not after a whole (possibly minutes-long) draft.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from lorastudio.dataset.images import load_image
from lorastudio.dataset.model import ImageSet
from lorastudio.drafting import DEFAULT_MAX_TOKENS, MAX_PIXELS, clean_draft, prompt_content
from lorastudio.training.families._common import offline_kwargs
from lorastudio.vl_folder import VLFolder


def pick_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def pick_dtype(device: torch.device) -> torch.dtype:
    """bf16 on a GPU that has it (fp16 otherwise); fp32 on the CPU, where half precision is
    not faster and some kernels are missing."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def quantization_config(quantization: str, dtype: torch.dtype):
    """transformers' ``BitsAndBytesConfig`` for ``int8`` / ``int4`` (None for ``none``)."""
    if quantization == "none":
        return None
    from transformers import BitsAndBytesConfig

    if quantization == "int8":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_threshold=6.0)
    if quantization == "int4":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype)
    raise ValueError(f"unknown quantization {quantization!r}")


class _StopRequested:
    """A transformers stopping criterion: every sequence is done once ``stop`` is set."""

    def __init__(self, stop) -> None:
        self.stop = stop

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        done = bool(self.stop is not None and self.stop.is_set())
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)


@dataclass
class Captioner:
    folder: VLFolder
    processor: Any
    model: Any
    device: torch.device
    max_tokens: int = DEFAULT_MAX_TOKENS

    def inputs(self, images: list, instruction: str, paired: bool):
        """The model's input for ``images`` (inputs then target; one image for a single set):
        the folder's chat template rendered over :func:`prompt_content`, then the
        processor (one image block per picture)."""
        num_inputs = len(images) - 1 if paired else 0
        messages = [{"role": "user", "content": prompt_content(num_inputs, instruction)}]
        text = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return self.processor(text=[text], images=images, return_tensors="pt")

    def generate_ids(self, inputs, stop=None) -> torch.Tensor:
        """Greedy generation of at most ``max_tokens`` new tokens; the new token ids (1-D)."""
        from transformers import StoppingCriteriaList

        inputs = inputs.to(self.device)
        with torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=self.max_tokens, do_sample=False,
                                      stopping_criteria=StoppingCriteriaList([_StopRequested(stop)]))
        return out[0, inputs["input_ids"].shape[1]:]

    def generate(self, inputs, stop=None) -> str:
        """The new text, decoded (special tokens dropped). A thinking model's reasoning (up to
        its last ``</think>`` token) is cut by token id first, as the Qwen3 model cards do:
        once special tokens are skipped in decoding, the tags may be gone from the text."""
        ids = self.generate_ids(inputs, stop=stop).tolist()
        think_end = self.processor.tokenizer.convert_tokens_to_ids("</think>")
        if isinstance(think_end, int) and think_end in ids and think_end != self.processor.tokenizer.unk_token_id:
            ids = ids[len(ids) - ids[::-1].index(think_end):]
        return self.processor.decode(ids, skip_special_tokens=True)

    def draft(self, image_set: ImageSet, instruction: str, paired: bool, trigger: str = "", stop=None) -> str:
        """A cleaned draft caption for one set (never containing ``trigger``)."""
        paths = image_set.images if paired else [image_set.target]
        images = [load_image(p) for p in paths]
        images = [shrink(im, MAX_PIXELS) for im in images]
        return clean_draft(self.generate(self.inputs(images, instruction, paired), stop=stop), trigger)


def shrink(image, max_pixels: int):
    """``image`` scaled down (aspect kept) to at most ``max_pixels``; never scaled up."""
    w, h = image.size
    if w * h <= max_pixels:
        return image
    scale = (max_pixels / (w * h)) ** 0.5
    from PIL import Image

    return image.resize((max(1, int(w * scale)), max(1, int(h * scale))), Image.Resampling.LANCZOS)


def load_captioner(folder: VLFolder, quantization: str = "none", max_tokens: int = DEFAULT_MAX_TOKENS,
                   device: torch.device | None = None) -> Captioner:
    """The folder's processor and model, on ``device`` (default: the GPU if there is one)."""
    import transformers
    from transformers import AutoProcessor

    transformers.utils.logging.disable_progress_bar()  # the command reports its own progress

    device = device or pick_device()
    dtype = pick_dtype(device)
    # A processor holds no weights (tokenizer and image-processor configs): nothing to unpickle.
    processor = AutoProcessor.from_pretrained(folder.processor_dir, local_files_only=True)
    model_class = getattr(transformers, folder.class_name)
    model = model_class.from_pretrained(
        folder.model_dir, **offline_kwargs(), dtype=dtype, device_map={"": str(device)},
        quantization_config=quantization_config(quantization, dtype))
    model.eval()
    return Captioner(folder=folder, processor=processor, model=model, device=device, max_tokens=max_tokens)

