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
