"""The leaf layer: what every other layer needs and that needs nothing of ours.

Errors, progress callbacks, the tool's home folder, atomic writes, file locks, timestamps and the
identity of the CUDA device. Modules here import only the standard library and torch.
"""
