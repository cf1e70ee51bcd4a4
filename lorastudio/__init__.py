"""LoRA Studio: train image-editing and text-to-image LoRAs on your own GPU, offline.

The package has three layers with one direction of imports (see DESIGN.md):
``dataset``, ``config`` and ``protocol`` are pure Python; ``training`` adds torch;
``ui`` adds PySide6 and never imports ``training``.
"""

__version__ = "0.1.0"
