"""The embedded default tiny set, made from images that pip packages ship (no download).

train/: out-of-domain images the default run compresses with (foolbox's CIFAR-10/100 samples,
scikit-image and scikit-learn photos). val/: foolbox's 20 labelled ImageNet photos in ImageFolder
layout (folder = class index), never trained on, so the default run reports true top-1 and agreement
on real ImageNet images.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.core.errors import UsageError
from pipeline.core.paths import home

_SKIMAGE_PHOTOS = [
    "astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry",
    "retina", "colorwheel", "logo", "coins", "camera", "page",
]


def embedded_tiny_set() -> tuple[Path, Path]:
    """(train folder, labelled validation folder), built on first use under the tool's home."""
    root = home() / "embedded-tiny-set"
    done = root / ".complete"
    if not done.exists():
        _build(root)
        done.write_text("ok\n")
    return root / "train", root / "val"


def _foolbox_data() -> Path:
    try:
        import foolbox
    except ImportError:
        raise UsageError(
            "the embedded default tiny set needs the images shipped by foolbox, scikit-image and scikit-learn: "
            "pip install '.[default-data]', or pass --data with your own image folder."
        ) from None
    return Path(foolbox.__file__).parent / "data"


def _build(root: Path) -> None:
    data = _foolbox_data()
    tmp = root.with_name(root.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "train").mkdir(parents=True)
    for path in sorted(data.glob("cifar10*_*.png")):
        shutil.copy(path, tmp / "train" / path.name)
    for path in sorted(data.glob("imagenet_*.jpg")):
        label = int(path.stem.split("_")[-1])
        (tmp / "val" / str(label)).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, tmp / "val" / str(label) / path.name)
    _write_skimage_and_sklearn(tmp / "train")
    shutil.rmtree(root, ignore_errors=True)
    tmp.rename(root)


def _write_skimage_and_sklearn(folder: Path) -> None:
    import skimage.data
    from sklearn.datasets import load_sample_images

    for name in _SKIMAGE_PHOTOS:
        try:
            pixels = getattr(skimage.data, name)()
        except Exception:  # a few skimage images are fetched on demand; skip those offline
            continue
        Image.fromarray(np.asarray(pixels)).convert("RGB").save(folder / f"skimage_{name}.png")
    for i, pixels in enumerate(load_sample_images().images):
        Image.fromarray(pixels).save(folder / f"sklearn_{i}.png")
