"""Exporters: turn a compressed PyTorch network into a deployable, verified artefact."""
