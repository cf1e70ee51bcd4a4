"""The words the app shows to explain itself: tooltips, tips, advice after a failed run.

Kept apart from the widgets so they read (and get reviewed) as text.
"""

from __future__ import annotations

TRAINING_TIPS = (
    "• Quality over quantity: 20 good pairs beat 100 mediocre ones.\n"
    "• Cover your variations: include an example for every use case.\n"
    "• Match resolutions: keep the images of a set the same size.\n"
    "• Steps: start with 1,000 for ~20 pairs. Learning rate: start with 1e-4 (typical 1e-4 … 5e-4).\n"
    "  Balloon analogy: steps = how many times you blow, learning rate = how hard.\n"
    "• Iterate: the first attempt is rarely perfect; refine and retrain.")

ABOUT = ("<b>LoRA Studio {version}</b><br>Train image-editing and text-to-image LoRAs on your own GPU, "
         "offline.")

# -- the Train tab's settings ------------------------------------------------------------

STEPS_TIP = ("<b>Steps</b>: how many times the model goes through a training example.<br>"
             "The balloon analogy: steps are <i>how many times you blow</i>. Too few and the model doesn't "
             "learn enough; too many and it overfits (memorizes instead of learning).<br>"
             "Starting point: for ~20 paired images, try <b>1,000</b> steps.")
LR_TIP = ("<b>Learning rate</b>: how much the model adjusts its weights with each step.<br>"
          "The balloon analogy: the learning rate is <i>how hard you blow each time</i>. Blow too softly "
          "(low) and you need more breaths; blow too hard (high) and you risk popping the balloon "
          "(training becomes unstable).<br>Typical values: <b>1e-4 to 5e-4</b>. Start with <b>1e-4</b>.")
RANK_TIP = ("<b>Rank</b>: the LoRA's capacity. 16 suits most edits; raise it (32–64) for complex concepts, "
            "lower it (4–8) for a small, simple style. Higher rank = bigger file, more memory.")
RES_TIP = ("<b>Resolution</b>: the training area in pixels (images are resized to about this many pixels "
           "squared, keeping their shape). 512 is quick; 1024 matches what the big models make.")
SEED_TIP = "Random seed: the same seed and settings give the same result."
SAMPLE_TIP = "Make preview images every N steps (0 = only at the end) to see the LoRA learn."
CKPT_TIP = "Save a checkpoint every N steps (0 = only when stopping and at the end); Resume continues from it."
TRIGGER_TIP = ("An optional word added to every caption (e.g. <i>sks_bgremove</i>). Use it in your prompt later "
               "to switch the effect on.")
DEFAULT_TIP = "The caption used for sets that have no .txt file."
NAME_TIP = "File name of the LoRA: OUTPUT/NAME.safetensors"
FORMAT_TIP = ("Which key names the LoRA file uses. “Automatic” picks, for the chosen model, the one that loads "
              "fully both in ComfyUI and in diffusers (diffusers names for FLUX.1, Kontext and Qwen-Image; the "
              "ComfyUI/BFL names for FLUX.2). “diffusers” is for diffusers' load_lora_weights (ComfyUI also "
              "reads it fully for FLUX.1 and Qwen-Image, but not for FLUX.2). “ComfyUI / kohya” is for "
              "ComfyUI's LoraLoader, Forge and kohya's scripts (for FLUX the original BFL layout with fused "
              "q/k/v); diffusers loads it too.")

PRESET_TIP = ("<b>Fit to my GPU</b>: pick your card's memory. LoRA Studio chooses the resolution and the "
              "fastest memory savers that fit this model on it (worked out from the model folder), and shows "
              "the estimate below. Change any saver yourself and the choice becomes “Custom”.")
CHECKPOINTING_TIP = ("<b>Gradient checkpointing</b>: recompute each block's activations during the backward "
                     "pass instead of keeping them. Much less memory (especially at 1024 px), about a third "
                     "slower per step.")
QUANT_TIP = ("<b>Base weights</b>: store the frozen base model in 8 or 4 bits (bitsandbytes). 8-bit halves the "
             "biggest memory item with little quality cost; 4-bit (NF4) quarters it. The LoRA itself always "
             "trains and is saved in full precision, in the normal format.")
OFFLOAD_TIP = ("<b>CPU offload</b>: keep the base model's blocks in system RAM and copy each one to the GPU only "
               "while it runs. Fits models much bigger than the card, but every step waits for those copies "
               "(several seconds). Turns gradient checkpointing on; not combined with 8/4-bit weights.")
ADAM8_TIP = ("<b>8-bit AdamW</b>: keep the optimizer's running averages in 8 bits (bitsandbytes). Saves 6 bytes "
             "per LoRA parameter; training is the same for practical purposes.")

#: What to do after a failed run, by the error event's ``kind``.
ADVICE = {
    "oom": "The GPU ran out of memory. Pick your card in “Fit to my GPU” (GPU memory) and check the estimate, "
           "lower the resolution or rank, or close other programs that use the GPU.",
    "nan": "The loss became NaN: the learning rate is probably too high — the balloon popped. "
           "Try a lower learning rate (1e-4).",
    "data": "A problem with the training data: check the Problems list in the Dataset tab.",
    "config": "A setting or the model folder is not right: check the settings on the left.",
    "killed": "The last saved checkpoint is kept: Resume continues from it.",
    "crash": "See the log below for details. The last saved checkpoint is kept: Resume continues from it.",
    "start": "The training program could not be started. Is LoRA Studio installed completely?",
}
