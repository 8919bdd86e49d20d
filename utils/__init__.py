"""Everything around the model: the loss and metrics, data, the engine, reporting and the applications."""
import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # albumentations would ask PyPI for updates at import
