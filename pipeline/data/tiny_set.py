"""The tiny set: images from a folder, decoded once, with training and evaluation transforms.

Folders are read recursively. When every image sits one folder below the root (ImageFolder layout)
the folder names are labels: a numeric name is the class index itself, otherwise classes are numbered
in sorted order as torchvision's ImageFolder does. Unreadable or non-image files are skipped and
counted, so the report can say what was used.
"""

from __future__ import annotations

import math
import random
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torchvision.transforms import v2 as T

from pipeline.core.errors import UsageError
from pipeline.models.loaded import input_channels

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".gif"}
# Images are stored with this much margin over the network resolution (the eval resize is 1/0.875).
_STORE_MARGIN = 1.15


@dataclass
class TinySet:
    images: list[Image.Image]
    paths: list[str]
    labels: list[int] | None
    skipped: dict[str, list[str]] = field(default_factory=dict)  # reason -> files

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, indices: list[int]) -> "TinySet":
        labels = [self.labels[i] for i in indices] if self.labels is not None else None
        return TinySet([self.images[i] for i in indices], [self.paths[i] for i in indices], labels, {})

    def summary(self) -> dict:
        return {
            "images": len(self),
            "labelled": self.labels is not None,
            "skipped": {reason: len(files) for reason, files in self.skipped.items()},
            "skipped_examples": {reason: files[:5] for reason, files in self.skipped.items()},
        }


def _labels_for(root: Path, files: list[Path]) -> list[int] | None:
    parents = {f.parent for f in files}
    if any(p == root or p.parent != root for p in parents):
        return None
    names = sorted({p.name for p in parents})
    if all(n.isdigit() for n in names):
        return [int(f.parent.name) for f in files]
    index = {n: i for i, n in enumerate(names)}
    return [index[f.parent.name] for f in files]


def load_image_folder(folder: str | Path, resolution: int, min_images: int = 2) -> TinySet:
    """Decode every image under `folder`, resized so the shorter side keeps a margin over `resolution`."""
    root = Path(folder)
    if not root.exists():
        raise UsageError(f"image folder '{root}' does not exist. Pass --data with a folder of images.")
    if not root.is_dir():
        raise UsageError(f"'{root}' is not a folder. Pass --data with a folder of images.")
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
    skipped: dict[str, list[str]] = {}
    images, paths, kept = [], [], []
    for path in files:
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            skipped.setdefault("not an image file", []).append(str(path))
            continue
        try:
            with warnings.catch_warnings(), Image.open(path) as im:
                warnings.simplefilter("error", Image.DecompressionBombWarning)  # decoding it could take all memory
                image = _shrink(_to_rgb(im), round(resolution * _STORE_MARGIN))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            skipped.setdefault("too many pixels (decompression bomb guard)", []).append(f"{path} ({exc})"[:300])
            continue
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            skipped.setdefault("unreadable", []).append(f"{path} ({type(exc).__name__})")
            continue
        images.append(image)
        paths.append(str(path))
        kept.append(path)
    if len(images) < min_images:
        found = f"{len(files)} files, {len(images)} readable images"
        raise UsageError(
            f"image folder '{root}' holds too few usable images ({found}; at least {min_images} needed). "
            f"Supported formats: {', '.join(sorted(IMAGE_SUFFIXES))}."
        )
    return TinySet(images, paths, _labels_for(root, kept), skipped)


def _to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB; 16-bit grey levels are scaled down (PIL's own conversion clips them, turning most pixels white)."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        levels = np.asarray(image, dtype=np.int64)
        peak = 65535 if image.mode.startswith("I;16") or levels.max(initial=0) > 255 else 255
        image = Image.fromarray((np.clip(levels, 0, peak) * 255 // peak).astype(np.uint8), "L")
    return image.convert("RGB")


def _shrink(image: Image.Image, shorter_side: int) -> Image.Image:
    w, h = image.size
    scale = shorter_side / min(w, h)
    if scale >= 1:
        return image.copy()
    return image.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BILINEAR)


def split_holdout(tiny: TinySet, fraction: float, seed: int) -> tuple[TinySet, TinySet]:
    """Split off a held-out part (at least one image) that recovery never trains on."""
    if len(tiny) < 2:
        raise UsageError("the tiny set needs at least 2 images to hold some out for evaluation.")
    order = list(range(len(tiny)))
    random.Random(seed).shuffle(order)
    n_held = min(len(tiny) - 1, max(1, round(len(tiny) * fraction)))
    return tiny.subset(sorted(order[n_held:])), tiny.subset(sorted(order[:n_held]))


@dataclass(frozen=True)
class Preprocessing:
    resolution: int
    mean: tuple[float, ...]  # one value per input channel
    std: tuple[float, ...]
    crop_fraction: float = 0.875  # evaluation: resize to resolution / crop_fraction, centre-crop resolution
    interpolation: str = "bilinear"

    @classmethod
    def of(cls, loaded) -> "Preprocessing":
        """The preprocessing a LoadedModel asks for (its own, or the user's overrides)."""
        return cls(loaded.resolution, tuple(loaded.mean), tuple(loaded.std), loaded.crop_fraction, loaded.interpolation)

    @property
    def channels(self) -> int:
        return len(self.mean)

    def _to_tensor(self) -> list:
        """Decoded RGB images to normalised float tensors; a grayscale network gets ITU-R 601 luma (PIL's "L")."""
        grey = [T.Grayscale(1)] if self.channels == 1 else []
        return [*grey, T.ToImage(), T.ToDtype(torch.float32, scale=True), T.Normalize(self.mean, self.std)]

    @property
    def decode_resolution(self) -> int:
        """The resolution images are decoded for: a crop fraction under 0.875 resizes them larger first."""
        return max(self.resolution, math.ceil(self.resolution * 0.875 / self.crop_fraction))

    def _filter(self) -> T.InterpolationMode:
        return T.InterpolationMode(self.interpolation)

    def eval_transform(self) -> T.Compose:
        return T.Compose([
            T.Resize(round(self.resolution / self.crop_fraction), interpolation=self._filter(), antialias=True),
            T.CenterCrop(self.resolution), *self._to_tensor(),
        ])

    def train_transform(self, min_scale: float) -> T.Compose:
        return T.Compose([
            T.RandomResizedCrop(self.resolution, scale=(min_scale, 1.0), interpolation=self._filter(), antialias=True),
            T.RandomHorizontalFlip(), *self._to_tensor(),
        ])


def eval_tensors(tiny: TinySet, prep: Preprocessing) -> torch.Tensor:
    """All images with evaluation transforms, stacked: (N, C, R, R)."""
    transform = prep.eval_transform()
    return torch.stack([transform(im) for im in tiny.images])


def augmented_views(tiny: TinySet, prep: Preprocessing, count: int, min_scale: float, seed: int) -> torch.Tensor:
    """`count` random training views drawn with replacement: (count, C, R, R)."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    transform = prep.train_transform(min_scale)
    return torch.stack([transform(tiny.images[rng.randrange(len(tiny))]) for _ in range(count)])


def check_labels_fit(images: TinySet, model: torch.nn.Module, resolution: int, folder: str | Path) -> None:
    """Refuse a labelled folder whose class indices the model cannot output (they would count as silent misses)."""
    if images.labels is None:
        return
    try:
        with torch.no_grad():
            num_classes = int(model(torch.zeros(1, input_channels(model), resolution, resolution)).shape[-1])
    except (RuntimeError, ValueError, TypeError, IndexError, AssertionError):
        return  # the block analysis that follows reports a forward that fails at this resolution, with its cause
    beyond = sorted({label for label in images.labels if label >= num_classes})
    if beyond:
        raise UsageError(
            f"'{folder}' is labelled with classes the model does not have: {', '.join(map(str, beyond[:5]))} "
            f"(the model outputs {num_classes} classes, 0 to {num_classes - 1}; numeric folder names are class "
            "indices). Rename the class folders, or put the images in one unlabelled folder for agreement only."
        )
