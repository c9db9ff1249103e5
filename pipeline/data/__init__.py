"""The tiny set: loading image folders, splits, transforms, and the embedded default."""
