"""Model loading: one entry point, `load_model(spec, weights)`, over torchvision, EfficientNet-Lite and user code."""

from pipeline.models.registry import LoadedModel, load_model, known_model_names

__all__ = ["LoadedModel", "load_model", "known_model_names"]
