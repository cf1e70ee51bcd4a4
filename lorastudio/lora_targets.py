"""Which layers each model family's LoRA trains, and why: the ``targets`` of its catalog record.

Each tuple lists module-name suffixes (peft matches ``target_modules`` by suffix). The reasons
are measured or follow what the field's trainers and loaders do (musubi-tuner, ai-toolkit,
DiffSynth-Studio, diffusers, ComfyUI), and they are long, so they live here, beside the
lists, rather than in ``catalog.py``, which names one of these per family.

Pure Python (no Qt, no torch).
"""

from __future__ import annotations

#: FLUX.1 (Kontext, dev): the attention and feed-forward projections of the double-stream
#: blocks (image and text streams: ``attn.to_*``, ``attn.add_*_proj``, ``attn.to_add_out``,
#: ``ff`` and ``ff_context``) and of the single-stream blocks (their q/k/v, ``proj_mlp`` and
#: ``proj_out``, which is the single block's attention-and-MLP output projection) — every
#: linear layer of the blocks, as musubi-tuner and ai-toolkit train FLUX. peft matches by
#: suffix, so ``proj_out`` also puts a LoRA on the model's final output layer (top-level
#: ``proj_out``, 3072→64): a tiny extra, loaded by diffusers and by ComfyUI
#: (``final_layer.linear``) alike; the AdaLN ``norm*.linear`` and the embedders are never
#: targeted.
FLUX1_TARGETS = (
    "attn.to_q", "attn.to_k", "attn.to_v", "attn.to_out.0",
    "attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj", "attn.to_add_out",
    "ff.net.0.proj", "ff.net.2", "ff_context.net.0.proj", "ff_context.net.2",
    "proj_mlp", "proj_out",
)
#: Qwen-Image(-Edit): attention projections of both streams (image: to_q/k/v/out, text:
#: add_*_proj, to_add_out), both streams' feed-forward layers, and the output projection
#: ``proj_out``, as FLUX.1's targets have it (peft matches by suffix, so FLUX.1's
#: ``proj_out`` covers its top-level one too). The AdaLN modulation layers are left alone, as
#: in diffusers' and musubi-tuner's Qwen-Image LoRA defaults. ``proj_out`` measured: without it
#: the tiny Qwen-Image-Edit-Plus's LoRA stops at ratio ~0.56 of the learning measure even on one
#: set; with it 0.16, each set's output closest to its own target (README "How we know a LoRA
#: learns"). ComfyUI maps every weight of its Qwen-Image model, this one included.
QWEN_TARGETS = (
    "attn.to_q", "attn.to_k", "attn.to_v", "attn.to_out.0",
    "attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj", "attn.to_add_out",
    "img_mlp.net.0.proj", "img_mlp.net.2", "txt_mlp.net.0.proj", "txt_mlp.net.2",
    "proj_out",
)
#: FLUX.2: every linear layer of the blocks: the double-stream attention (image ``to_q/k/v``,
#: ``to_out.0``; text ``add_*_proj``, ``to_add_out``) and SwiGLU feed-forwards
#: (``ff``/``ff_context`` ``linear_in``/``linear_out``), and the single-stream blocks' fused
#: ``to_qkv_mlp_proj`` and their ``attn.to_out`` (a Linear there, where the double blocks'
#: ``attn.to_out`` is a ModuleList: ``add_lora`` only ever targets Linear layers, so the
#: suffix picks the right ones). Modulation and embedders are left alone, as for FLUX.1.
FLUX2_TARGETS = (
    "attn.to_q", "attn.to_k", "attn.to_v", "attn.to_out.0",
    "attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj", "attn.to_add_out",
    "ff.linear_in", "ff.linear_out", "ff_context.linear_in", "ff_context.linear_out",
    "attn.to_qkv_mlp_proj", "attn.to_out",
)
#: Qwen-Image 2.1 (single-stream blocks): each block's attention projections and its SwiGLU
#: feed-forward (``img_mlp.proj``, ``img_mlp.gate_layer``, ``img_mlp.out``) — every linear
#: layer of the blocks — and the final ``proj_out`` (``QwenImage21Transformer2DModel``'s
#: output head; the same name as Qwen-Image's, whose LoRAs have it for the reason given
#: above: without it the tiny 2.1's LoRA stopped at ratio 0.85, the three outputs alike).
#: The shared ``modulation``, the embedders (``img_in``, ``txt_in``) and ``norm_out`` are left
#: alone. diffusers puts a LoRA layer on each; ComfyUI (3cd7b32) has no Qwen-Image 2.1 model.
QWEN21_TARGETS = (
    "attn.to_q", "attn.to_k", "attn.to_v", "attn.to_out.0",
    "img_mlp.proj", "img_mlp.gate_layer", "img_mlp.out",
    "proj_out",
)

#: Z-Image (``ZImageTransformer2DModel``): the single-stream blocks' attention (``to_q/k/v``,
#: ``to_out.0``) and SwiGLU feed-forward (``feed_forward.w1/w2/w3``) — every linear layer of a
#: block except its AdaLN modulation, as DiffSynth-Studio's and ai-toolkit's Z-Image LoRAs.
#: peft matches by suffix, so the noise and context refiner blocks (and Omni's SigLIP refiner)
#: get LoRA layers too; ComfyUI maps all of them but the SigLIP refiner (its Z-Image model has
#: none: see the Omni record).
ZIMAGE_TARGETS = (
    "attention.to_q", "attention.to_k", "attention.to_v", "attention.to_out.0",
    "feed_forward.w1", "feed_forward.w2", "feed_forward.w3",
)
#: JoyImage-Edit-Plus (``JoyImageEditPlusTransformer3DModel``: double-stream blocks only): each
#: block's fused image and text attention projections (``attn.img_attn_qkv`` / ``img_attn_proj``,
#: ``attn.txt_attn_qkv`` / ``txt_attn_proj``) and both streams' feed-forwards — every linear
#: layer of the blocks (their modulation is a parameter table, not a layer) — and the output
#: projection ``proj_out``, as the FLUX.1 and Qwen targets have it (the tiny model's LoRA
#: passes the learning measure with it: 0.12; without it 0.39–0.43, each set's output not
#: closest to its own target). The embedders and ``condition_embedder`` are left alone.
JOYIMAGE_TARGETS = (
    "attn.img_attn_qkv", "attn.img_attn_proj", "attn.txt_attn_qkv", "attn.txt_attn_proj",
    "img_mlp.net.0.proj", "img_mlp.net.2", "txt_mlp.net.0.proj", "txt_mlp.net.2",
    "proj_out",
)
