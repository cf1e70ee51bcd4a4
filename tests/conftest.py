"""Session-wide test settings: offline, headless, and no stray user settings."""

import os

# Nothing may be fetched from a hub: every model the tests use is built locally.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
# Qt widgets render offscreen in tests (set before any Qt import).
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
