"""How much GPU memory and time a run needs, worked out before anything loads. Torch-free.

The training panel shows this as settings change and ``lorastudio train CONFIG --dry-run``
prints it, so an artist learns *before* a 10-minute model load whether a run fits the card.
Everything comes from the model folder's small files: ``model_index.json`` (family, whose
LoRA targets and text-token count the catalog gives),
``transformer/config.json`` (width, depth) and the safetensors *headers* of the transformer
weights (every tensor's name, dtype and shape: exact parameter counts without reading
gigabytes or importing torch).

The model (documented assumptions; GB below are GiB, 1024³ bytes, as nvidia-smi and the
Windows task manager count a card's memory):

* **Weights.** Block linears (``nn.Linear`` in ``transformer_blocks`` /
  ``single_transformer_blocks``, > 95 % of the parameters) at 2 bytes (bf16), 1 byte + 1 %
  scales (int8, LLM.int8) or 0.5 + 0.0625 bytes (int4 NF4, one fp32 absmax per 64 values);
  all other parameters at 2 bytes. With CPU offload only the non-block weights and two
  blocks (the running one and the next copy) are resident. Sanity check: FLUX.1-dev's
  transformer has 11.9 B parameters → 23.8e9 bytes = 22.2 GiB in bf16, which is why it
  does not train on a 24 GB card without quantization or offload.
* **LoRA.** rank × (in + out) parameters per targeted linear (read from the weight shapes),
  kept in fp32: weight 4 + gradient 4 + AdamW's two states 8 bytes (2 with 8-bit AdamW).
* **Activations.** Per block and token, a transformer layer keeps about 34 × hidden bytes
  in 16-bit (Korthikanti et al., "Reducing Activation Recomputation in Large Transformer
  Models", with fused/flash attention so no seq² term). With gradient checkpointing only
  each block's input (2 bytes × hidden per token) is kept, plus one block's full set
  during its recompute. The sequence is what the transformer really sees: target tokens
  ((side/16)², 8× VAE × 2×2 patches) + every input image's tokens (edit models append
  them; at the target's area, or about 1 MP = 4096 tokens under ``train.input_size =
  "pipeline"``) + text tokens (FLUX: 512 T5 tokens, padded; Qwen: ~64 text tokens + ~188 tokens
  per input image, which the Qwen2.5-VL encoder sees at 384²).
* **Overhead.** 1 GiB (CUDA context, cuBLAS workspace) plus 10 % allocator slack.

Time: forward FLOPs = 2 × block-linear params × tokens + 4 × tokens² × hidden per block;
a step costs 2 forwards (forward + input gradients; the frozen base needs no weight
gradients), 3 with checkpointing (the recompute). Divided by a reference GPU's bf16 rate
(RTX 4090-class, 165 TFLOPS) at a utilization that depends on the quantization (bnb int8
and NF4 kernels are slower than bf16 matmuls), plus PCIe time for offload. Rough (±50 %).

Known figures it is checked against (tests/test_estimate.py keeps them honest): the
diffusers QLoRA write-up trains FLUX.1-dev with NF4 + 8-bit AdamW + checkpointing at
512 px in ~9 GB peak at ~3.5 s/step on an RTX 4090; ai-toolkit and kohya's sd-scripts
train FLUX.1 LoRAs at 1024 px on 24 GB cards only with 8-bit base weights (or block swap)
and gradient checkpointing.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from lorastudio import catalog
from lorastudio.model_folder import ModelFolderError, read_model_index

GIB = 1024 ** 3
#: Bytes per element of safetensors dtypes.
DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "I64": 8, "I32": 4,
               "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}
#: Repeated-block prefixes of a model LoRA Studio does not train (a family's are in its record).
BLOCK_PREFIXES = catalog.DIT_BLOCKS
#: Pixels per side of one transformer token (8× VAE, 2×2 patches) for every family here.
PIXELS_PER_TOKEN = 16

#: Reference GPU for the time estimate (an RTX 4090: 165 dense bf16 TFLOPS, fp32 accumulate).
REFERENCE_GPU = "RTX 4090-class"
REFERENCE_TFLOPS = 165.0
#: Fraction of peak a step reaches, by base-weight storage (bnb int8/NF4 matmuls are slower).
UTILIZATION = {"none": 0.55, "int8": 0.22, "int4": 0.20}
#: Effective host→GPU copy rate for block offload (pinned memory, PCIe 4.0 x16), bytes/s.
PCIE_BYTES_PER_S = 20e9
ACT_BYTES_PER_TOKEN_HIDDEN = 34   # per block, 16-bit activations, no checkpointing
#: Bytes per weight of a quantizable linear: bf16; LLM.int8 plus ~1 % scales; NF4 plus one
#: fp32 absmax per 64 values.
WEIGHT_BYTES = {"none": 2.0, "int8": 1.01, "int4": 0.5625}
OVERHEAD_BYTES = 1.0 * GIB
SLACK = 1.10


class EstimateError(ValueError):
    """The model folder cannot be read for an estimate (message names the file)."""


# -- reading the model folder --------------------------------------------------------------------

def read_safetensors_header(path: str | Path) -> dict[str, Any]:
    """The JSON header of a .safetensors file: ``{name: {"dtype", "shape", "data_offsets"}}``."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            raw = fh.read(8)
            if len(raw) != 8:
                raise EstimateError(f"{path}: not a safetensors file (too short)")
            (length,) = struct.unpack("<Q", raw)
            if length > 100 * 1024 * 1024:
                raise EstimateError(f"{path}: not a safetensors file (header length {length})")
            header = json.loads(fh.read(length))
    except OSError as exc:
        raise EstimateError(f"{path}: cannot read ({exc})") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise EstimateError(f"{path}: not a safetensors file (unreadable header)") from None
    header.pop("__metadata__", None)
    return header


def tensor_shapes(folder: str | Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """name → (dtype, shape) for every tensor in the folder's .safetensors files (shards too)."""
    folder = Path(folder)
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise EstimateError(f"{folder}: no .safetensors weights found")
    out: dict[str, tuple[str, tuple[int, ...]]] = {}
    for file in files:
        for name, info in read_safetensors_header(file).items():
            out[name] = (info["dtype"], tuple(int(d) for d in info["shape"]))
    return out


def count_params(shapes: dict[str, tuple[str, tuple[int, ...]]]) -> int:
    return sum(math.prod(shape) for _dtype, shape in shapes.values())


@dataclass(frozen=True)
class ModelFacts:
    """What the estimate needs to know about a model: counts and sizes, no weights."""

    family: str
    params: int                 #: every transformer parameter
    block_linear_params: int    #: weights of the linears inside the repeated blocks (quantizable)
    block_count: int
    hidden: int
    lora_in_out: int            #: Σ (in + out) over the LoRA-targeted linears: LoRA params = rank × this
    largest_block_params: int
    file_bytes: int = 0         #: the transformer's weights as stored

    @property
    def edit(self) -> bool:
        return self.record is not None and self.record.edit

    @property
    def record(self) -> catalog.FamilyRecord | None:
        """The family's catalog record (None for a model LoRA Studio does not train)."""
        return catalog.find(self.family)


def model_facts(model_dir: str | Path) -> ModelFacts:
    """Read the family from ``model_index.json`` and the counts from the transformer's headers."""
    model_dir = Path(model_dir)
    try:
        record = catalog.family_for_pipeline(str(read_model_index(model_dir).get("_class_name", "")))
    except ModelFolderError as exc:
        raise EstimateError(str(exc)) from None
    family = record.id if record else ""
    config_path = model_dir / "transformer" / "config.json"
    try:
        config = json.loads(config_path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError) as exc:
        raise EstimateError(f"{config_path}: cannot read the transformer config ({exc})") from None
    return facts_from(family, config, tensor_shapes(model_dir / "transformer"))


def facts_from(family: str, config: dict[str, Any], shapes: dict[str, tuple[str, tuple[int, ...]]]) -> ModelFacts:
    """ModelFacts from a transformer config and its tensors' shapes (also used for real configs)."""
    record = catalog.find(family)
    hidden = math.prod(int(config.get(key, 0)) for key in
                       (record.width_config_keys if record else ("num_attention_heads", "attention_head_dim")))
    blocks = record.block_prefixes if record else BLOCK_PREFIXES
    targets = record.lora_targets if record else None  # unknown family: every block linear
    block_linear = lora = 0
    per_block: dict[str, int] = {}
    for name, (_dtype, shape) in shapes.items():
        if not name.startswith(blocks):
            continue
        prefix = ".".join(name.split(".")[:2])
        per_block[prefix] = per_block.get(prefix, 0) + math.prod(shape)
        if len(shape) != 2 or not name.endswith(".weight"):
            continue
        block_linear += math.prod(shape)
        module = name[: -len(".weight")]
        if targets is None or any(module.endswith(t) for t in targets):
            lora += shape[0] + shape[1]
    if targets is not None:  # peft matches by suffix outside the blocks too (FLUX's final proj_out)
        for name, (_dtype, shape) in shapes.items():
            if not name.startswith(blocks) and len(shape) == 2 and name.endswith(".weight"):
                if any(name[: -len(".weight")].endswith(t) for t in targets):
                    lora += shape[0] + shape[1]
    file_bytes = sum(math.prod(s) * DTYPE_BYTES.get(d, 2) for d, s in shapes.values())
    return ModelFacts(family=family, params=count_params(shapes), block_linear_params=block_linear,
                      block_count=len(per_block), hidden=hidden or 1, lora_in_out=lora,
                      largest_block_params=max(per_block.values(), default=0), file_bytes=file_bytes)


# -- the estimate --------------------------------------------------------------------------------

@dataclass(frozen=True)
class MemoryOptions:
    gradient_checkpointing: bool = False
    quantization: str = "none"
    cpu_offload: bool = False
    optimizer: str = "adamw"

    @classmethod
    def of(cls, train_config) -> "MemoryOptions":
        return cls(**{k: getattr(train_config, k) for k in ("gradient_checkpointing", "quantization",
                                                            "cpu_offload", "optimizer")})

    def describe(self) -> str:
        parts = [{"none": "bf16 weights", "int8": "8-bit weights", "int4": "4-bit weights"}[self.quantization]]
        if self.cpu_offload:
            parts.append("CPU offload")
        if self.gradient_checkpointing or self.cpu_offload:
            parts.append("gradient checkpointing")
        parts.append("8-bit AdamW" if self.optimizer == "adamw8bit" else "AdamW")
        return ", ".join(parts)


@dataclass(frozen=True)
class Estimate:
    weights: float          #: bytes resident on the GPU for the base weights
    lora: float             #: LoRA weights + gradients + optimizer states
    activations: float
    overhead: float
    seq_len: int
    step_seconds: float
    options: MemoryOptions = field(default_factory=MemoryOptions)

    @property
    def total(self) -> float:
        return self.weights + self.lora + self.activations + self.overhead

    @property
    def total_gb(self) -> float:
        return self.total / GIB

    def fits(self, vram_gb: float) -> bool:
        return self.total <= vram_gb * GIB

    def summary(self) -> str:
        """One line for the training panel."""
        return (f"≈ {self.total_gb:.1f} GB of GPU memory (weights {format_gib(self.weights)}, activations "
                f"{format_gib(self.activations)}, LoRA + optimizer {format_gib(self.lora)}, overhead "
                f"{format_gib(self.overhead)}) · {approx_seconds(self.step_seconds)}/step on an "
                f"{REFERENCE_GPU} GPU")

    def lines(self, steps: int | None = None) -> list[str]:
        """Lines for ``train --dry-run``."""
        out = [f"memory:     {self.options.describe()}",
               f"estimate:   ≈ {self.total_gb:.1f} GB GPU memory: weights {format_gib(self.weights)}, "
               f"activations {format_gib(self.activations)} ({self.seq_len} tokens per sample), "
               f"LoRA + optimizer {format_gib(self.lora)}, overhead {format_gib(self.overhead)}",
               f"time:       {approx_seconds(self.step_seconds)} per step on an {REFERENCE_GPU} GPU "
               f"({REFERENCE_TFLOPS:g} bf16 TFLOPS; rough, ±50 %)"
               + (f", {steps} steps {approx_seconds(self.step_seconds * steps)}" if steps else "")]
        return out


def format_gib(n_bytes: float) -> str:
    """GB for the big parts, MB for the small ones, so a tiny model's parts do not all read "0.0"."""
    if n_bytes >= 0.1 * GIB:
        return f"{n_bytes / GIB:.1f} GB"
    mib = n_bytes / 2**20
    return "under 1 MB" if mib < 1 else f"{mib:.0f} MB"


def format_seconds(seconds: float) -> str:
    if seconds < 0.05:
        return "under 0.1 s"
    if seconds < 10:
        return f"{seconds:.1f} s"
    seconds = int(round(seconds))
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def approx_seconds(seconds: float) -> str:
    """"≈ 3.2 s", or "under 0.1 s" (never "≈ under …")."""
    text = format_seconds(seconds)
    return text if text.startswith("under") else f"≈ {text}"


def sequence_length(facts: ModelFacts, resolution: int, num_inputs: int,
                    input_size: str = catalog.AUTO_INPUT_SIZE) -> int:
    """Tokens per sample: target + each input image + text. An input has the target's area
    under the ``"target"`` input-size rule, the pipeline's (about 1 MP) under ``"pipeline"``
    (``train.input_size``; ``"auto"``: the family's default), unless the family's pipeline puts it on
    the target's grid (``input_on_target_grid``)."""
    image = (resolution // PIXELS_PER_TOKEN) ** 2
    record = facts.record
    text = record.text_tokens + record.text_tokens_per_input * num_inputs if record else 512
    per_input = image
    if (record and num_inputs and not record.input_on_target_grid
            and catalog.resolve_input_size(input_size, record.id) == "pipeline"):
        per_input = record.pipeline_input_area // PIXELS_PER_TOKEN ** 2
    return image + per_input * num_inputs + text


def estimate(facts: ModelFacts, *, resolution: int, rank: int, batch_size: int = 1, num_inputs: int | None = None,
             options: MemoryOptions = MemoryOptions(), dtype_bytes: int = 2,
             input_size: str = catalog.AUTO_INPUT_SIZE) -> Estimate:
    """Peak GPU memory and seconds per step for one configuration (see the module docstring)."""
    if num_inputs is None:
        num_inputs = 1 if facts.edit else 0
    seq = sequence_length(facts, resolution, num_inputs, input_size)
    other = facts.params - facts.block_linear_params
    if options.cpu_offload:
        weights = other * dtype_bytes + 2 * facts.largest_block_params * dtype_bytes
    else:
        per_param = dtype_bytes if options.quantization == "none" else WEIGHT_BYTES[options.quantization]
        weights = facts.block_linear_params * per_param + other * dtype_bytes
    lora_params = rank * facts.lora_in_out
    lora = lora_params * (4 + 4 + (2 if options.optimizer == "adamw8bit" else 8))
    tokens = seq * batch_size
    full_block = ACT_BYTES_PER_TOKEN_HIDDEN * tokens * facts.hidden * dtype_bytes / 2
    checkpointing = options.gradient_checkpointing or options.cpu_offload
    if checkpointing:
        activations = facts.block_count * tokens * facts.hidden * dtype_bytes + full_block
    else:
        activations = facts.block_count * full_block
    core = (weights + lora + activations) * SLACK
    overhead = OVERHEAD_BYTES + core - (weights + lora + activations)

    forward = 2 * facts.block_linear_params * tokens + 4 * seq * seq * facts.hidden * facts.block_count * batch_size
    flops = forward * (3 if checkpointing else 2)
    seconds = flops / (REFERENCE_TFLOPS * 1e12 * UTILIZATION[options.quantization])
    if options.cpu_offload:
        seconds += 2 * facts.block_linear_params * dtype_bytes / PCIE_BYTES_PER_S
    return Estimate(weights=weights, lora=lora, activations=activations, overhead=overhead, seq_len=seq,
                    step_seconds=seconds, options=options)


#: The order "Fit to my GPU" tries memory savers in: fastest first, then what costs speed,
#: then what costs a little quality (4-bit), then what costs a lot of speed (offload).
LADDER: tuple[MemoryOptions, ...] = (
    MemoryOptions(),
    MemoryOptions(gradient_checkpointing=True),
    MemoryOptions(gradient_checkpointing=True, optimizer="adamw8bit"),
    MemoryOptions(gradient_checkpointing=True, quantization="int8", optimizer="adamw8bit"),
    MemoryOptions(gradient_checkpointing=True, quantization="int4", optimizer="adamw8bit"),
    MemoryOptions(gradient_checkpointing=True, cpu_offload=True, optimizer="adamw8bit"),
)
#: Share of the card a run may plan to use (the desktop and other programs use some).
HEADROOM = 0.97


def fit_options(facts: ModelFacts, vram_gb: float, *, resolution: int, rank: int, batch_size: int = 1,
                num_inputs: int | None = None, input_size: str = catalog.AUTO_INPUT_SIZE,
                ) -> tuple[MemoryOptions, Estimate, bool]:
    """The first rung of ``LADDER`` that fits ``vram_gb`` (options, its estimate, fits?)."""
    best = None
    for options in LADDER:
        est = estimate(facts, resolution=resolution, rank=rank, batch_size=batch_size, num_inputs=num_inputs,
                       options=options, input_size=input_size)
        if est.fits(vram_gb * HEADROOM):
            return options, est, True
        if best is None or est.total < best[1].total:
            best = (options, est)
    assert best is not None
    return best[0], best[1], False


def estimate_for_config(config, num_inputs: int | None = None, facts: ModelFacts | None = None) -> Estimate:
    """The estimate for a loaded Config (``train --dry-run``, the training panel)."""
    facts = facts or model_facts(config.model.path)
    t = config.train
    return estimate(facts, resolution=t.resolution, rank=t.rank, batch_size=t.batch_size, num_inputs=num_inputs,
                    options=MemoryOptions.of(t), input_size=t.input_size)


def with_options(options: MemoryOptions, **changes: Any) -> MemoryOptions:
    return replace(options, **changes)


# -- drafting captions with a vision-language model (``lorastudio caption``) ------------------

def caption_memory(linear_params: int, other_params: int, hidden: int, kv_width: int, layers: int, tokens: int,
                   quantization: str = "none") -> float:
    """Peak GPU bytes to draft a caption: the weights (linears at ``WEIGHT_BYTES``, the rest
    bf16), the key/value cache (2 × layers × tokens × ``kv_width``, 16-bit) and one layer's
    activations for the prompt's ``tokens``, plus the same overhead and slack as training.
    Qwen2.5-VL-7B (8.3 B parameters, 15.5 GB of bf16 weights): ≈ 18.5 GB in bf16, 11 in int8, 8 in int4."""
    weights = linear_params * WEIGHT_BYTES[quantization] + other_params * 2
    working = 2 * layers * tokens * kv_width * 2 + ACT_BYTES_PER_TOKEN_HIDDEN * tokens * hidden
    return OVERHEAD_BYTES + (weights + working) * SLACK
