"""The embedded default tiny set, made from images that pip packages ship (no download).

train/: out-of-domain images the default run compresses with (foolbox's CIFAR-10/100 samples,
scikit-image and scikit-learn photos). val/: foolbox's 20 labelled ImageNet photos in ImageFolder
layout (folder = class index), never trained on, so the default run reports true top-1 and agreement
on real ImageNet images.

The set is the same on every machine: every image is read from a file inside an installed package
(scikit-image's on-demand downloads are never used), and a missing file stops the build with the
package and extra named instead of leaving a smaller set.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from PIL import Image

from pipeline.core.errors import UsageError
from pipeline.core.extras import package_folder
from pipeline.core.locks import exclusive_lock
from pipeline.core.paths import home

PURPOSE = "the embedded default tiny set (or pass --data with your own image folder)"
# scikit-image photo -> the file its package ships (the names skimage.data's loaders read)
SKIMAGE_PHOTOS = {
    "astronaut": "astronaut.png", "chelsea": "chelsea.png", "coffee": "coffee.png", "rocket": "rocket.jpg",
    "hubble_deep_field": "hubble_deep_field.jpg", "immunohistochemistry": "ihc.png", "retina": "retina.jpg",
    "colorwheel": "color.png", "logo": "logo.png", "coins": "coins.png", "camera": "camera.png", "page": "page.png",
}
SKLEARN_PHOTOS = ("china.jpg", "flower.jpg")
FOOLBOX_CIFAR_IMAGES = 40
FOOLBOX_IMAGENET_IMAGES = 20


def embedded_tiny_set() -> tuple[Path, Path]:
    """(train folder, labelled validation folder), built on first use under the tool's home."""
    root = home() / "embedded-tiny-set"
    done = root / ".complete"
    if not done.exists():
        with exclusive_lock(root.with_name(root.name + ".lock")):  # two first runs build it once
            if not done.exists():
                _build(root)
                done.write_text("ok\n")
    return root / "train", root / "val"


def _package_files(module_name: str, subfolder: str, pattern: str, expected: int) -> list[Path]:
    """The `expected` files matching `pattern` that a package ships; fewer is an incomplete install."""
    folder = package_folder(module_name, PURPOSE) / subfolder
    files = sorted(folder.glob(pattern))
    if len(files) != expected:
        raise UsageError(
            f"{PURPOSE}: the package '{module_name.split('.')[0]}' ships {len(files)} of the {expected} images "
            f"'{pattern}' expected in {folder}; reinstall it: pip install --force-reinstall '.[default-data]'."
        )
    return files


def _build(root: Path) -> None:
    cifar = _package_files("foolbox", "data", "cifar10*_*.png", FOOLBOX_CIFAR_IMAGES)
    imagenet = _package_files("foolbox", "data", "imagenet_*.jpg", FOOLBOX_IMAGENET_IMAGES)
    skimage_files = _named_files("skimage", "data", SKIMAGE_PHOTOS)
    sklearn_files = _named_files("sklearn", "datasets/images", {Path(n).stem: n for n in SKLEARN_PHOTOS})
    tmp = root.with_name(root.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "train").mkdir(parents=True)
    for path in cifar:
        shutil.copy(path, tmp / "train" / path.name)
    for path in imagenet:
        label = int(path.stem.split("_")[-1])
        (tmp / "val" / str(label)).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, tmp / "val" / str(label) / path.name)
    for name, path in skimage_files.items():
        _save_rgb_png(path, tmp / "train" / f"skimage_{name}.png")
    for i, path in enumerate(sklearn_files.values()):
        _save_rgb_png(path, tmp / "train" / f"sklearn_{i}.png")
    shutil.rmtree(root, ignore_errors=True)
    tmp.rename(root)


def _named_files(module_name: str, subfolder: str, names: dict[str, str]) -> dict[str, Path]:
    """{name: file} for files a package ships under `subfolder`; a missing one stops the build."""
    folder = package_folder(module_name, PURPOSE) / subfolder
    missing = [f for f in names.values() if not (folder / f).is_file()]
    if missing:
        raise UsageError(
            f"{PURPOSE}: the package '{module_name.split('.')[0]}' does not ship {', '.join(missing)} in {folder} "
            "(this version fetches it on demand, which the tool never does); install the versions the constraints "
            "file names: pip install -c constraints.txt '.[default-data]'."
        )
    return {name: folder / f for name, f in names.items()}


def _save_rgb_png(source: Path, target: Path) -> None:
    with Image.open(source) as image:
        image.convert("RGB").save(target)
