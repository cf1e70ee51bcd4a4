"""The dataset core: scan a training folder, group its sets, validate it, edit captions.

Pure Python plus Pillow, never Qt or torch: the GUI, the trainer and ``lorastudio check``
all build on it, and it is tested without either heavy dependency loaded.

Typical use::

    dataset = scan_dataset(Path("my_dataset"))
    for image_set in dataset.trainable_sets():
        images = [load_image(p) for p in image_set.images]
        prompt = effective_caption(image_set, trigger="zkw")
"""

from lorastudio.dataset.bulk import (
    CaptionApplyResult,
    CaptionChange,
    CaptionWriteFailure,
    apply_caption_changes,
    plan_add_trigger,
    plan_fill_empty,
    plan_find_replace,
)
from lorastudio.dataset.captions import (
    CaptionText,
    effective_caption,
    read_caption,
    read_caption_text,
    write_caption,
)
from lorastudio.dataset.images import (
    IMAGE_EXTENSIONS,
    EmptyImageError,
    ImageError,
    ImageInfo,
    ImageTooLargeError,
    image_size,
    load_image,
    probe_image,
)
from lorastudio.dataset.model import Dataset, ImageSet, Mode, Problem, Severity
from lorastudio.dataset.problems import SEVERITY_OF
from lorastudio.dataset.scan import scan_dataset

__all__ = [
    "IMAGE_EXTENSIONS",
    "SEVERITY_OF",
    "CaptionApplyResult",
    "CaptionChange",
    "CaptionText",
    "CaptionWriteFailure",
    "Dataset",
    "EmptyImageError",
    "ImageError",
    "ImageInfo",
    "ImageSet",
    "ImageTooLargeError",
    "Mode",
    "Problem",
    "Severity",
    "apply_caption_changes",
    "effective_caption",
    "image_size",
    "load_image",
    "plan_add_trigger",
    "plan_fill_empty",
    "plan_find_replace",
    "probe_image",
    "read_caption",
    "read_caption_text",
    "scan_dataset",
    "write_caption",
]
