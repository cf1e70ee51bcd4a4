"""Memory savers for the transformer: quantized base weights, block offload, checkpointing.

The trainer calls, in this order::

    transformer = load_transformer(family, t)      # quantized blocks when t.quantization
    params = add_lora(transformer, ...)            # peft puts LoRA layers on the (quantized) linears
    place_transformer(transformer, device, t)      # on the GPU, or streamed block by block

(the optimizer, bitsandbytes' AdamW8bit among them, is built in ``optimizer.py``).

Why bitsandbytes (and not torchao or optimum-quanto):

* it ships wheels for Linux **and Windows** (CUDA), which is where artists' GPUs are, and
  (since 0.46) a CPU backend — so the very code path the GPU takes (``Linear8bitLt`` /
  ``Linear4bit`` layers, ``AdamW8bit``) runs in the tests here on the CPU;
* peft has LoRA layers made for it (``peft.tuners.lora.bnb``: the QLoRA path), so LoRA
  training on 8-/4-bit linears is the library's supported use, not our glue;
* diffusers uses the same layers for its ``BitsAndBytesConfig`` (we mark the model the way
  its quantizer does, ``is_loaded_in_8bit`` / ``is_loaded_in_4bit``, so pipelines and peft
  treat it alike). We do not call ``from_pretrained(quantization_config=…)`` itself
  because diffusers refuses it without a GPU, and one tested path beats two;
* torchao's int4 weight-only kernels are CUDA/Linux-first, its 8-bit AdamW compiles with
  ``torch.compile`` (needs a compiler toolchain, rare on Windows; ~30 s first step on the
  CPU here), and optimum-quanto has had no release since March 2025.

Quantization targets only the ``nn.Linear`` layers inside the repeated transformer blocks
(over 95 % of a FLUX/Qwen transformer's parameters); embedders, norms and the output
layer stay in the training dtype, as diffusers' own bnb integration keeps them.

Block offload (``cpu_offload``) is ours, in the shape of musubi-tuner's block swap, because
diffusers' group offloading moves weights by swapping ``param.data`` in forward hooks: the
backward pass then finds the CPU tensor where autograd saved the GPU one (SimpleTuner
dropped its diffusers group-offload integration over this). Here each block's frozen
weights stay on the CPU (pinned) and a *new* GPU copy is made for the block's forward;
autograd keeps that copy alive exactly as long as backward needs it, so the result is
correct with or without gradient checkpointing. Memory is only saved with checkpointing
(otherwise every block's copy is held for backward), so offload turns it on.
"""

from __future__ import annotations

from typing import Callable

import torch

#: Attribute names of the repeated blocks, per transformer class (FLUX.1/FLUX.2: double
#: then single blocks; Qwen-Image: one list). Quantization and offload act on these.
BLOCK_LISTS = ("transformer_blocks", "single_transformer_blocks")


def blocks(transformer: torch.nn.Module) -> list[torch.nn.Module]:
    """The repeated transformer blocks, in execution order (through a peft wrapper too)."""
    from lorastudio.training.families._common import unwrap_peft

    model = unwrap_peft(transformer)
    out: list[torch.nn.Module] = []
    for name in BLOCK_LISTS:
        out.extend(getattr(model, name, None) or [])
    return out


# -- loading and quantization --------------------------------------------------------------------

def load_transformer(family, train_config) -> torch.nn.Module:
    """The family's transformer, with its block linears quantized when ``train_config.quantization``.

    With a memory saver on, the weights are read into CPU memory first (never the whole
    bf16 model onto the GPU: that is what does not fit); quantized layers move to the GPU
    one by one as they are made (bitsandbytes quantizes on that move).
    """
    if train_config.quantization == "none" and not train_config.cpu_offload:
        return family.load_transformer()
    device = family.device
    family.device = torch.device("cpu")  # the family's loader moves to family.device
    try:
        transformer = family.load_transformer()
    finally:
        family.device = device
    if train_config.quantization != "none":
        quantize_blocks(transformer, train_config.quantization, family.dtype, device)
    return transformer


def quantize_blocks(transformer: torch.nn.Module, kind: str, compute_dtype: torch.dtype,
                    device: torch.device) -> int:
    """Replace every ``nn.Linear`` in the blocks by a bitsandbytes 8-bit (LLM.int8) or 4-bit
    (NF4) layer on ``device``; returns how many. Frozen: the LoRA on top is what trains."""
    import bitsandbytes as bnb

    if kind not in ("int8", "int4"):
        raise ValueError(f"unknown quantization {kind!r}")
    count = 0
    for block in blocks(transformer):
        for parent in list(block.modules()):
            for name, child in list(parent.named_children()):
                if type(child) is not torch.nn.Linear:
                    continue
                weight = child.weight.data
                if kind == "int8":
                    layer = bnb.nn.Linear8bitLt(child.in_features, child.out_features, bias=child.bias is not None,
                                                has_fp16_weights=False, threshold=6.0)
                    # Int8Params quantizes only when moved *from the CPU* (a GPU tensor would stay
                    # fp16 and unquantized), so stage the weight there.
                    layer.weight = bnb.nn.Int8Params(weight.to("cpu", torch.float16), requires_grad=False,
                                                     has_fp16_weights=False)
                else:
                    layer = bnb.nn.Linear4bit(child.in_features, child.out_features, bias=child.bias is not None,
                                              compute_dtype=compute_dtype, quant_type="nf4", quant_storage=torch.uint8)
                    layer.weight = bnb.nn.Params4bit(weight.to(compute_dtype), requires_grad=False, quant_type="nf4")
                    # bitsandbytes' CPU inference fast path repacks weights by 64-wide blocks of
                    # the input dimension, which breaks on layers narrower than a block (the
                    # tiny test models); training never takes it, previews need not either.
                    layer.support_avx512bf16_for_cpu = False
                if child.bias is not None:
                    layer.bias = torch.nn.Parameter(child.bias.data.to(compute_dtype), requires_grad=False)
                setattr(parent, name, layer.to(device))  # bitsandbytes quantizes on this move
                del child, weight
                count += 1
    # What diffusers' bnb quantizer sets: peft then wraps these linears with its bnb LoRA
    # layers, and pipelines know not to cast or move the model's dtype.
    setattr(transformer, "is_loaded_in_8bit" if kind == "int8" else "is_loaded_in_4bit", True)
    return count


# -- placement and block offload -----------------------------------------------------------------

class BlockOffload:
    """Frozen block weights live on the CPU; each block gets a fresh GPU copy for its forward.

    A forward pre-hook swaps a GPU copy of every frozen parameter into the block (as a new
    Parameter object), the forward hook puts the CPU one back. Trainable (LoRA) parameters
    and buffers stay on the device. Works in the gradient-checkpointing recompute too,
    which calls the block again (its pre-hook; see ``_onload`` for the post-hook), so at
    most one block's copy is swapped in at a time, plus what autograd still holds.
    """

    def __init__(self, transformer: torch.nn.Module, device: torch.device) -> None:
        self.device = device
        self.entries: list[list[tuple[torch.nn.Module, str, torch.nn.Parameter]]] = []
        self.handles = []
        self.onloaded: set[int] = set()
        pin = device.type == "cuda"
        in_blocks = set()
        for block in blocks(transformer):
            entries = []
            for module in block.modules():
                in_blocks.add(id(module))
                for name, param in list(module._parameters.items()):
                    if param is None:
                        continue
                    if param.requires_grad:
                        param.data = param.data.to(device)
                        continue
                    cpu = param.data.to("cpu")
                    if pin:
                        cpu = cpu.pin_memory()
                    held = torch.nn.Parameter(cpu, requires_grad=False)
                    module._parameters[name] = held
                    entries.append((module, name, held))
                for name, buf in list(module._buffers.items()):
                    if buf is not None:
                        module._buffers[name] = buf.to(device)
            self.entries.append(entries)
            self.handles.append(block.register_forward_pre_hook(self._onload(len(self.entries) - 1)))
            self.handles.append(block.register_forward_hook(self._offload(len(self.entries) - 1)))
        # Everything outside the blocks (embedders, norms, output layer) is small: on the device.
        for module in transformer.modules():
            if id(module) in in_blocks:
                continue
            for name, param in list(module._parameters.items()):
                if param is not None:
                    param.data = param.data.to(device)
            for name, buf in list(module._buffers.items()):
                if buf is not None:
                    module._buffers[name] = buf.to(device)

    def _onload(self, index: int) -> Callable:
        def hook(_module, _args):
            # The backward recompute of a checkpointed block stops early (torch's checkpoint
            # "early stop" ends the re-run once it has what backward needs), so that block's
            # forward hook never fires: put back whatever is still swapped in first.
            for other in [i for i in self.onloaded if i != index]:
                self._restore(other)
            for module, name, held in self.entries[index]:
                module._parameters[name] = torch.nn.Parameter(held.data.to(self.device, non_blocking=True),
                                                              requires_grad=False)
            self.onloaded.add(index)
        return hook

    def _offload(self, index: int) -> Callable:
        def hook(_module, _args, _output):
            self._restore(index)
        return hook

    def _restore(self, index: int) -> None:
        for module, name, held in self.entries[index]:
            module._parameters[name] = held  # the GPU copy lives on only in autograd's graph
        self.onloaded.discard(index)

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []


def place_transformer(transformer: torch.nn.Module, device: torch.device, train_config) -> BlockOffload | None:
    """Put the transformer (with its LoRA layers) on ``device``: whole, or with block offload.

    Turns gradient checkpointing on as ``train_config`` asks (and always with offload);
    returns the offload object (hooks installed) or None.
    """
    offload = None
    if train_config.cpu_offload:
        offload = BlockOffload(transformer, device)
    else:
        transformer.to(device)
    if train_config.gradient_checkpointing or train_config.cpu_offload:
        enable_gradient_checkpointing(transformer)
    return offload


def enable_gradient_checkpointing(transformer: torch.nn.Module) -> None:
    """diffusers' per-block checkpointing on the transformer (every family's model class
    supports it); a model without it is an error, not a silent no-op."""
    from lorastudio.training.families._common import unwrap_peft

    model = unwrap_peft(transformer)
    if not getattr(model, "_supports_gradient_checkpointing", False):
        raise RuntimeError(f"{type(model).__name__} does not support gradient checkpointing")
    model.enable_gradient_checkpointing()
