"""Model loading: one entry point, `load_model(spec, weights)`, over torchvision, EfficientNet-Lite and user code."""

from pipeline.models.loaded import LoadedModel
from pipeline.models.registry import known_model_names, load_model

__all__ = ["LoadedModel", "load_model", "known_model_names"]
