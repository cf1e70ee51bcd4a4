"""The model families LoRA Studio trains: one record per family, every fact about it stated here.

Config validation, the CLI, the memory estimate, the GUI's model-folder check, the
training families, the LoRA key layouts, the modelspec header, the demo and the tiny
test models all read a family's facts from its :class:`FamilyRecord`, so adding a family
is one record here, one family file (``training/families/<family_module>.py``, whose
class sets ``record``) and its tiny-model recipe (``training/tiny/<tiny_recipe>.py``) —
nothing else (a family whose LoRA trains layers no other family has adds its list, with the
reasons, to ``lora_targets.py``).

Pure Python (no Qt, no torch): the GUI, the CLI and the worker all import it.
"""

from __future__ import annotations

from dataclasses import dataclass

from lorastudio.lora_targets import (FLUX1_TARGETS, FLUX2_TARGETS, JOYIMAGE_TARGETS, QWEN21_TARGETS, QWEN_TARGETS,
                                     ZIMAGE_TARGETS)

#: What a dataset holds: before/after pairs, or single images with captions (the values of
#: ``lorastudio.dataset.Mode``, a ``str`` enum, so either spelling compares equal).
PAIRED = "paired"
SINGLE = "single"

#: The LoRA file's key layouts (see ``training/formats.py``): diffusers' names, or the
#: kohya/BFL names ComfyUI, Forge and kohya's scripts use.
LORA_FORMATS = ("diffusers", "comfyui")
#: ``output.format`` value that means "the family's ``default_format``".
AUTO_FORMAT = "auto"
#: Which loader each key layout is written for (GUI labels, dry-run text).
FORMAT_LOADERS = {"diffusers": "diffusers' load_lora_weights",
                  "comfyui": "ComfyUI's LoraLoader (also Forge, SwarmUI, kohya)"}

_BFL_FLUX = "https://github.com/black-forest-labs/flux"
_BFL_FLUX2 = "https://github.com/black-forest-labs/flux2"
_QWEN = "https://github.com/QwenLM/Qwen-Image"
_QWEN21 = "https://github.com/QwenLM/Qwen-Image-2.1"
_ZIMAGE = "https://github.com/Tongyi-MAI/Z-Image"
#: Parameter-name prefixes of the repeated transformer blocks (what the estimate counts as
#: "blocks": quantizable linears, activations per block).
DIT_BLOCKS = ("transformer_blocks.", "single_transformer_blocks.")
_LONGCAT = "https://github.com/meituan-longcat/LongCat-Image"
_JOYIMAGE = "https://github.com/jd-opensource/JoyAI-Image"


#: ``train.input_size``: how an input image is sized for training (edit families).
#: "target": at the target's bucket size (aspect kept when it clearly differs), as musubi-tuner
#: and ai-toolkit's ``match_target_res`` do; "pipeline": at the size the family's diffusers
#: pipeline gives it by default at inference (about 1 MP: Qwen-Image-Edit-Plus always,
#: Kontext's preferred resolutions, FLUX.2 the reference's own size up to 1 MP), as
#: ai-toolkit does by default; "auto": the family's ``default_input_size``.
INPUT_SIZE_RULES = ("target", "pipeline")
AUTO_INPUT_SIZE = "auto"


@dataclass(frozen=True)
class FamilyRecord:
    """Everything about one model family that is not tensor code."""

    #: Short id used in configs (``[model] family``), the CLI (``--family``), LoRA metadata.
    id: str
    #: Human name shown in the GUI and in messages ("FLUX.1 Kontext").
    display_name: str
    #: ``model_index.json`` ``_class_name`` values of this family's folders; the first is
    #: the diffusers pipeline class the family loads and samples with.
    pipeline_classes: tuple[str, ...]
    #: Kinds of dataset it trains (:data:`PAIRED`, :data:`SINGLE`); the first is its main
    #: kind, the one ``lorastudio demo`` generates for it.
    modes: tuple[str, ...]
    #: Most input images a set may have (None: no fixed limit); 0 for text-to-image.
    max_inputs: int | None
    #: Module-name suffixes peft puts LoRA layers on.
    lora_targets: tuple[str, ...]
    #: The LoRA key layout ``output.format = "auto"`` writes: the one verified to load fully
    #: both in the family's diffusers pipeline and in ComfyUI.
    default_format: str
    #: Key layouts whose files ComfyUI's loader applies completely (checked with ComfyUI's
    #: own LoraLoader); any other loses keys there, silently. Empty when the ComfyUI LoRA
    #: Studio is checked against cannot load the model at all (then ``default_format`` is
    #: simply the one diffusers loads).
    comfyui_formats: tuple[str, ...]
    #: Which key-naming rules of ``training/formats.py`` apply ("flux1", "flux2", "qwen").
    key_layout: str
    #: Text tokens the transformer sees per sample, for the memory estimate (FLUX pads T5 /
    #: the LLM encoder to 512; Qwen trims to the real tokens, about 64).
    text_tokens: int
    #: Extra prompt tokens per input image (Qwen2.5-VL sees each input at 384²: ≈ 188).
    text_tokens_per_input: int
    #: ``modelspec.architecture`` without ``/lora`` (the ids SwarmUI and musubi-tuner use).
    modelspec_architecture: str
    #: ``modelspec.implementation``: the reference code the weights belong to.
    modelspec_implementation: str
    #: Module of ``lorastudio/training/families/`` that defines the family class.
    family_module: str
    #: Module of ``lorastudio/training/tiny/`` whose ``RECIPES[id]`` builds the tiny model.
    tiny_recipe: str
    #: Transformer width → size tag appended to the modelspec architecture (FLUX.2 [klein]
    #: comes as 4B and 9B); empty when the family has one size.
    modelspec_size_tags: tuple[tuple[int, str], ...] = ()
    #: ``train.input_size = "auto"`` means this rule (:data:`INPUT_SIZE_RULES`): the one measured
    #: to train the best LoRA for this family (``benchmarks/input_size.py``). Edit families only.
    default_input_size: str = "target"
    #: Pixels the family's pipeline gives each input image's VAE view by default (about 1 MP,
    #: whatever the output size), for the ``"pipeline"`` rule and the estimate.
    pipeline_input_area: int = 1024 * 1024
    #: The pipeline puts the input on the target's position grid: the target's size under either rule.
    input_on_target_grid: bool = False
    #: Parameter-name prefixes of the transformer's repeated blocks, for the estimate.
    block_prefixes: tuple[str, ...] = DIT_BLOCKS
    #: ``transformer/config.json`` keys whose product is the transformer's hidden width
    #: (heads × head dim for the FLUX/Qwen configs; Z-Image states ``dim``).
    width_config_keys: tuple[str, ...] = ("num_attention_heads", "attention_head_dim")
    #: The ``diffusers.loaders`` class whose ``lora_state_dict`` / ``load_lora_into_transformer``
    #: read this family's LoRA files, for a pipeline class without a LoRA loader of its own
    #: (diffusers 0.42's LongCat pipelines); "" = the pipeline class's own loader.
    lora_loader: str = ""

    @property
    def pipeline_class(self) -> str:
        return self.pipeline_classes[0]

    @property
    def main_mode(self) -> str:
        return self.modes[0]

    def trains(self, mode: str) -> bool:
        """True when the family trains datasets of ``mode`` ("paired" / "single")."""
        return mode in self.modes

    @property
    def edit(self) -> bool:
        """Trains image-editing datasets (before/after pairs)."""
        return self.trains(PAIRED)

    @property
    def text_to_image(self) -> bool:
        """Trains text-to-image datasets (image + caption)."""
        return self.trains(SINGLE)


FAMILIES: tuple[FamilyRecord, ...] = (
    FamilyRecord(
        id="kontext", display_name="FLUX.1 Kontext", pipeline_classes=("FluxKontextPipeline",),
        modes=(PAIRED,), max_inputs=1, lora_targets=FLUX1_TARGETS,
        default_format="diffusers", comfyui_formats=("diffusers", "comfyui"), key_layout="flux1",
        text_tokens=512, text_tokens_per_input=0,
        # Kontext is a FLUX.1-dev architecture: SwarmUI and musubi-tuner tag its LoRAs so.
        modelspec_architecture="Flux.1-dev", modelspec_implementation=_BFL_FLUX,
        family_module="kontext", tiny_recipe="flux1",
        # Measured (benchmarks/input_size.py): trained at the pipeline's ~1 MP, a LoRA does best
        # in the pipeline's default call and in previews (ratio 0.29 vs 0.64 / 0.36 at the target's size).
        default_input_size="pipeline"),
    FamilyRecord(
        id="qwen-edit-plus", display_name="Qwen-Image-Edit-Plus", pipeline_classes=("QwenImageEditPlusPipeline",),
        modes=(PAIRED,), max_inputs=3, lora_targets=QWEN_TARGETS,
        default_format="diffusers", comfyui_formats=("diffusers", "comfyui"), key_layout="qwen",
        text_tokens=64, text_tokens_per_input=188,
        modelspec_architecture="qwen-image-edit-plus", modelspec_implementation=_QWEN,
        family_module="qwen_edit_plus", tiny_recipe="qwen",
        # Measured (benchmarks/input_size.py): the pipeline always VAE-encodes inputs at ~1 MP; trained
        # so, a LoRA does best in its default call (ratio 0.53 vs 0.76 at the target's size).
        default_input_size="pipeline"),
    FamilyRecord(
        id="flux", display_name="FLUX.1 (text-to-image)", pipeline_classes=("FluxPipeline",),
        modes=(SINGLE,), max_inputs=0, lora_targets=FLUX1_TARGETS,
        default_format="diffusers", comfyui_formats=("diffusers", "comfyui"), key_layout="flux1",
        text_tokens=512, text_tokens_per_input=0,
        modelspec_architecture="Flux.1-dev", modelspec_implementation=_BFL_FLUX,
        family_module="flux", tiny_recipe="flux1"),
    FamilyRecord(
        id="qwen-image", display_name="Qwen-Image (text-to-image)", pipeline_classes=("QwenImagePipeline",),
        modes=(SINGLE,), max_inputs=0, lora_targets=QWEN_TARGETS,
        default_format="diffusers", comfyui_formats=("diffusers", "comfyui"), key_layout="qwen",
        text_tokens=64, text_tokens_per_input=0,
        modelspec_architecture="qwen-image", modelspec_implementation=_QWEN,
        family_module="qwen_image", tiny_recipe="qwen"),
    # FLUX.2's diffusers-named files lose the feed-forward and single-block keys in ComfyUI
    # (12 of 28 on the tiny model, 128 of 192 modules on FLUX.2-dev); the BFL-named file
    # loads fully in both, so it is the default.
    FamilyRecord(
        id="flux2", display_name="FLUX.2", pipeline_classes=("Flux2Pipeline",),
        modes=(PAIRED, SINGLE), max_inputs=None, lora_targets=FLUX2_TARGETS,
        default_format="comfyui", comfyui_formats=("comfyui",), key_layout="flux2",
        text_tokens=512, text_tokens_per_input=0,
        modelspec_architecture="flux.2-dev", modelspec_implementation=_BFL_FLUX2,
        family_module="flux2", tiny_recipe="flux2"),
    FamilyRecord(
        id="flux2-klein", display_name="FLUX.2 [klein]", pipeline_classes=("Flux2KleinPipeline",),
        modes=(PAIRED, SINGLE), max_inputs=None, lora_targets=FLUX2_TARGETS,
        default_format="comfyui", comfyui_formats=("comfyui",), key_layout="flux2",
        text_tokens=512, text_tokens_per_input=0,
        # 4B: 24 heads × 128, 9B: 32 heads × 128.
        modelspec_architecture="flux.2-klein", modelspec_implementation=_BFL_FLUX2,
        modelspec_size_tags=((3072, "4b"), (4096, "9b")),
        family_module="flux2", tiny_recipe="flux2"),
    # Qwen-Image 2.1: one model edits (up to 10 reference images, Qwen's stated limit) and
    # generates from text. Each input image's VL slots become its latent tokens, so it adds
    # only its marker tokens to the text (" <imageN>" ≈ 4, "<|vision_start|>", "<|vision_end|>");
    # its image tokens (at the training area, 16 px per token) are counted as images. The
    # ComfyUI checked here (0.8.0) has no Qwen-Image 2.1 model, so no format loads there.
    FamilyRecord(
        id="qwen-image-2.1", display_name="Qwen-Image 2.1", pipeline_classes=("QwenImage21Pipeline",),
        modes=(PAIRED, SINGLE), max_inputs=10, lora_targets=QWEN21_TARGETS,
        default_format="diffusers", comfyui_formats=(), key_layout="qwen",
        text_tokens=64, text_tokens_per_input=6,
        modelspec_architecture="qwen-image-2.1", modelspec_implementation=_QWEN21,
        family_module="qwen_image21", tiny_recipe="qwen21"),
    # Z-Image (Tongyi-MAI/Z-Image-Turbo, Tongyi-MAI/Z-Image): text-to-image. The Qwen3-4B
    # prompt is trimmed to its real tokens (a caption: ~64) and padded to 32 in the model.
    FamilyRecord(
        id="zimage", display_name="Z-Image (text-to-image)", pipeline_classes=("ZImagePipeline",),
        modes=(SINGLE,), max_inputs=0, lora_targets=ZIMAGE_TARGETS,
        default_format="diffusers", comfyui_formats=("diffusers", "comfyui"), key_layout="zimage",
        text_tokens=64, text_tokens_per_input=0,
        modelspec_architecture="z-image", modelspec_implementation=_ZIMAGE,
        block_prefixes=("layers.", "noise_refiner.", "context_refiner."), width_config_keys=("dim",),
        family_module="zimage", tiny_recipe="zimage"),
    # Z-Image Omni (ZImageOmniPipeline): edits with any number of reference images (the
    # pipeline sets no limit) and also generates from text alone. Each reference adds a
    # SigLIP2 view (at most 256 patches: Siglip2ImageProcessor's max_num_patches) and one
    # 32-token prompt segment besides its VAE tokens. The ComfyUI this project checks
    # against has no Z-Image model with a SigLIP branch, so it cannot load Omni at all.
    FamilyRecord(
        id="zimage-omni", display_name="Z-Image Omni", pipeline_classes=("ZImageOmniPipeline",),
        modes=(PAIRED, SINGLE), max_inputs=None, lora_targets=ZIMAGE_TARGETS,
        default_format="diffusers", comfyui_formats=(), key_layout="zimage",
        text_tokens=64, text_tokens_per_input=256 + 32,
        modelspec_architecture="z-image-omni", modelspec_implementation=_ZIMAGE,
        block_prefixes=("layers.", "noise_refiner.", "context_refiner.", "siglip_refiner."),
        width_config_keys=("dim",),
        family_module="zimage", tiny_recipe="zimage"),
    # LongCat-Image: a FLUX.1-layout transformer (10 double + 20 single blocks, FLUX.1's module
    # names) fed by Qwen2.5-VL-7B. diffusers 0.42's LongCat pipelines have no LoRA loader, so
    # files are read with its FLUX.1 loader (the same module names). ComfyUI (3cd7b32) has no
    # LongCat model: its FLUX detector takes the transformer for FLUX.1-schnell and leaves the
    # timestep embedder unloaded, so no LoRA layout is "loads in ComfyUI" (comfyui_formats empty).
    FamilyRecord(
        id="longcat-edit", display_name="LongCat-Image-Edit", pipeline_classes=("LongCatImageEditPipeline",),
        modes=(PAIRED,), max_inputs=1, lora_targets=FLUX1_TARGETS,
        default_format="diffusers", comfyui_formats=(), key_layout="flux1",
        # 512 caption tokens (padded) + per input the VL encoder's view of it at ~512² (half the
        # ~1 MP output's side): (504/28)² = 324 merged patches + <|vision_start|>/<|vision_end|>.
        text_tokens=512, text_tokens_per_input=326,
        modelspec_architecture="longcat-image-edit", modelspec_implementation=_LONGCAT, input_on_target_grid=True,
        lora_loader="FluxLoraLoaderMixin", family_module="longcat", tiny_recipe="longcat"),
    FamilyRecord(
        id="longcat", display_name="LongCat-Image (text-to-image)", pipeline_classes=("LongCatImagePipeline",),
        modes=(SINGLE,), max_inputs=0, lora_targets=FLUX1_TARGETS,
        default_format="diffusers", comfyui_formats=(), key_layout="flux1",
        text_tokens=512, text_tokens_per_input=0,
        modelspec_architecture="longcat-image", modelspec_implementation=_LONGCAT,
        lora_loader="FluxLoraLoaderMixin", family_module="longcat", tiny_recipe="longcat"),
    # JoyAI-Image-Edit-Plus (JoyImageEditPlusPipeline): a 16 B double-stream DiT (40 blocks, 4096
    # wide) fed by Qwen3-VL-8B, Wan 2.1's VAE. Edits with 1-5 reference images (the diffusers
    # documentation's range; the pipeline itself sets no limit) and generates from text alone
    # (images=None). The Qwen3-VL encoder sees every reference at the pipeline's ~1 MP bucket
    # (32 px per vision token: 1024 + <|vision_start|>/<|vision_end|>). diffusers 0.42 has no LoRA
    # loader for it (neither the pipeline nor the transformer has one): files use the generic
    # diffusers peft layout (the "zimage" key rules: transformer.<module>, alpha folded), which
    # diffusers' PeftAdapterMixin.load_lora_adapter reads; the family's transformer class adds that
    # mixin, and ZImageLoraLoaderMixin's lora_state_dict / load_lora_into_transformer (generic for
    # that layout) call it. The ComfyUI checked here (3cd7b32) has no JoyImage model: no format loads there.
    FamilyRecord(
        id="joyimage-edit-plus", display_name="JoyImage-Edit-Plus", pipeline_classes=("JoyImageEditPlusPipeline",),
        modes=(PAIRED, SINGLE), max_inputs=5, lora_targets=JOYIMAGE_TARGETS,
        default_format="diffusers", comfyui_formats=(), key_layout="zimage",
        text_tokens=64, text_tokens_per_input=1024 + 2,
        modelspec_architecture="joyimage-edit-plus", modelspec_implementation=_JOYIMAGE,
        block_prefixes=("double_blocks.",), width_config_keys=("hidden_size",),
        lora_loader="ZImageLoraLoaderMixin", family_module="joyimage", tiny_recipe="joyimage"),
    # JoyAI-Image-Edit (JoyImageEditPipeline): JD's first release, a checkpoint of its own (a
    # JoyImageEditTransformer3DModel: Edit-Plus's 40 blocks × 4096 and parameter names, 16.26 B, but
    # another forward and weights; the same Qwen3-VL-8B and Wan 2.1 VAE). Edits exactly one image, cropped
    # to the output's size (one position grid), or generates from text; the Qwen3-VL encoder sees the
    # input at that ~1 MP bucket (1024 + 2 tokens). Edit-Plus's LoRA route; ComfyUI 3cd7b32 has no JoyImage.
    FamilyRecord(
        id="joyimage-edit", display_name="JoyImage-Edit", pipeline_classes=("JoyImageEditPipeline",),
        modes=(PAIRED, SINGLE), max_inputs=1, lora_targets=JOYIMAGE_TARGETS,
        default_format="diffusers", comfyui_formats=(), key_layout="zimage",
        text_tokens=64, text_tokens_per_input=1024 + 2,
        modelspec_architecture="joyimage-edit", modelspec_implementation=_JOYIMAGE, input_on_target_grid=True,
        block_prefixes=("double_blocks.",), width_config_keys=("hidden_size",),
        lora_loader="ZImageLoraLoaderMixin", family_module="joyimage_edit", tiny_recipe="joyimage"),
)

#: Family ids, in the catalog's order.
FAMILY_IDS: tuple[str, ...] = tuple(r.id for r in FAMILIES)
_BY_ID = {r.id: r for r in FAMILIES}
_BY_PIPELINE = {name: r for r in FAMILIES for name in r.pipeline_classes}


class UnknownFamilyError(KeyError):
    """A family id that is not in the catalog."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


def family(family_id: str) -> FamilyRecord:
    """The record of ``family_id``, or an :class:`UnknownFamilyError` listing the known ones."""
    try:
        return _BY_ID[family_id]
    except KeyError:
        raise UnknownFamilyError(f"unknown model family {family_id!r}; LoRA Studio trains: "
                                 f"{', '.join(FAMILY_IDS)}") from None


def find(family_id: str) -> FamilyRecord | None:
    """The record of ``family_id``, or None when there is no such family."""
    return _BY_ID.get(family_id)


def resolve_input_size(rule: str, family_id: str) -> str:
    """The input-size rule a run uses: ``rule``, or the family's default for ``"auto"``."""
    return family(family_id).default_input_size if rule == AUTO_INPUT_SIZE else rule


def family_for_pipeline(class_name: str) -> FamilyRecord | None:
    """The family whose folders name ``class_name`` in ``model_index.json`` (None: unsupported)."""
    return _BY_PIPELINE.get(class_name)


def pipeline_classes() -> tuple[str, ...]:
    """Every ``_class_name`` LoRA Studio trains, in catalog order."""
    return tuple(_BY_PIPELINE)


def supported_models_text() -> str:
    """"FluxKontextPipeline (FLUX.1 Kontext), …" for messages."""
    return ", ".join(f"{name} ({record.display_name})" for name, record in _BY_PIPELINE.items())


def families_for_mode(mode: str) -> tuple[FamilyRecord, ...]:
    """The families that train datasets of ``mode`` ("paired" / "single")."""
    return tuple(r for r in FAMILIES if r.trains(mode))


# -- the LoRA file's format ----------------------------------------------------------------------


def resolve_format(fmt: str, family_id: str) -> str:
    """The key layout a run writes: ``fmt``, or the family's default for ``"auto"``."""
    return family(family_id).default_format if fmt == AUTO_FORMAT else fmt


def describe_format(fmt: str, family_id: str) -> str:
    """"comfyui format, chosen automatically for FLUX.2: …" — what a run will write, in words."""
    record = family(family_id)
    resolved = resolve_format(fmt, family_id)
    if fmt == AUTO_FORMAT:
        if not record.comfyui_formats:
            return (f"{resolved} format, chosen automatically for {record.display_name}: it loads fully in "
                    f"diffusers (ComfyUI cannot load {record.display_name} models)")
        return (f"{resolved} format, chosen automatically for {record.display_name}: it loads fully in ComfyUI "
                "and in diffusers")
    return f"{resolved} format, for {FORMAT_LOADERS[resolved]}"


def comfyui_warning(fmt: str, family_id: str, adapter: str = "lora") -> str:
    """A sentence when a LoRA of ``family_id`` in ``fmt`` will not load fully in ComfyUI
    ("" when it will): an explicit choice is kept, but the artist is told. A DoRA is named on
    its own: its diffusers layout keeps the magnitude as ``lora_magnitude_vector``, which
    ComfyUI does not read (it reads ``dora_scale``, written only in the comfyui layout)."""
    record = family(family_id)
    resolved = resolve_format(fmt, family_id)
    if not record.comfyui_formats:  # ComfyUI cannot load the model: only a choice made for ComfyUI is told
        return "" if resolved == record.default_format else (
            f"The ComfyUI LoRA Studio is checked against cannot load {record.display_name} itself, so no LoRA "
            f"format is known to load there, and diffusers may skip some keys of a {resolved!r} file. Choose "
            f'"{record.default_format}" (or "{AUTO_FORMAT}"): it loads fully in diffusers.')
    if adapter == "dora" and resolved == "diffusers":
        return (f"A DoRA in the 'diffusers' format loads fully in diffusers, but ComfyUI applies it without its "
                f"magnitude (it reads only the comfyui layout's dora_scale). For ComfyUI choose "
                f'output.format = "comfyui"; LoRA Studio\'s Test tab loads either.')
    if resolved in record.comfyui_formats:
        return ""
    better = " or ".join(f'"{f}"' for f in record.comfyui_formats)
    return (f"{record.display_name} LoRAs in the {resolved!r} format do not load fully in ComfyUI (some "
            f"layers are silently skipped there); diffusers loads them. For ComfyUI choose {better} "
            f'(or "{AUTO_FORMAT}").')
