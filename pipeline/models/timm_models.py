"""timm architectures as `--model timm:NAME`, with the preprocessing of their pretrained config.

timm is an optional extra (`pip install '.[timm]'`). The architecture is built with `pretrained=False`,
so nothing is downloaded; trained weights come only from `--weights FILE` (a state_dict, e.g. the
`pytorch_model.bin` or `.safetensors`-converted checkpoint a user keeps). The model's own
`pretrained_cfg` gives the input size, mean, std, crop percentage and resize filter.
"""

from __future__ import annotations

import difflib

import torch

from pipeline.core.errors import UsageError
from pipeline.core.extras import require_extra
from pipeline.models.loaded import LoadedModel

PREFIX = "timm:"


def load_timm(spec: str) -> LoadedModel:
    """`timm:NAME` built without weights, with its pretrained config's preprocessing."""
    name = spec[len(PREFIX):].strip()
    timm = require_extra("timm", f"--model {spec}")
    if not name or not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join(PREFIX + c for c in close)}?" if close else ""
        raise UsageError(f"timm has no architecture '{name}'.{hint} `python -c \"import timm; "
                         "print(timm.list_models('resnet*'))\"` lists the names.")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        module = timm.create_model(name, pretrained=False)
    cfg = dict(getattr(module, "pretrained_cfg", None) or {})
    height = cfg.get("input_size", (3, 224, 224))[1]  # square inputs: (C, H, W) with H == W for classifiers
    return LoadedModel(  # a filter this tool lacks is refused by preprocessing.with_preprocessing, naming the fix
        PREFIX + name, module, int(height), tuple(cfg.get("mean", (0.485, 0.456, 0.406))),
        tuple(cfg.get("std", (0.229, 0.224, 0.225))), "random",
        crop_fraction=float(cfg.get("crop_pct", 0.875)), interpolation=str(cfg.get("interpolation", "bilinear")),
    )
