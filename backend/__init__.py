"""Self-hosted text-to-image REST server."""

import os

__version__ = "0.3.0"

# The product loads local folders only. Forcing the hub offline before anything imports
# huggingface_hub turns any accidental download into an immediate, explicit error.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
# transformers warns about optional vision backends on import; only real errors are worth a line.
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
