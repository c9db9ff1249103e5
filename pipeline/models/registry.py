"""Resolve a model spec to a module with its preprocessing.

A spec is one of: a torchvision classification architecture (`resnet50`), an EfficientNet-Lite name
with packaged weights (`efficientnet_lite0`), user code as `package.module:function`, or a file that
holds a whole saved `nn.Module`. Weights come from a state_dict file; architectures that ship weights
in a package load them by default.

Trust: unpickling a whole module runs code from the file, so it happens only for a spec that is clearly a
file (`file:PATH`, or a path ending in .pt/.pth), never for a model name that happens to match a file in
the working directory. State_dicts always load with `weights_only=True`. User code is imported with the
working directory on `sys.path` only while it loads. A run folder reopened by `export`/`evaluate` names its
model in its settings; when that spec runs code (`runs_code`), the user must say they trust the folder.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import os
import pickle
import sys
from pathlib import Path
from typing import Iterator

import torch
from torch import nn

from pipeline.core.errors import UsageError
from pipeline.models import efficientnet_lite
from pipeline.models.loaded import LoadedModel

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SAVED_MODULE_PREFIX = "file:"  # --model file:PATH: unpickle the whole module saved in PATH (runs its code)
SAVED_MODULE_SUFFIXES = (".pt", ".pth")




def _torchvision_names() -> list[str]:
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def known_model_names() -> list[str]:
    return sorted(efficientnet_lite.LITE_VARIANTS) + _torchvision_names()


def load_model(spec: str, weights: str | Path | None = None, resolution: int | None = None) -> LoadedModel:
    """Build the architecture named by `spec`, load weights, and return it in eval mode.

    Construction is seeded, so a network left with random weights is the same in every process (a
    resumed run, `pipeline evaluate`, `pipeline export`), without touching the caller's random state.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        loaded = _build(spec)
    if weights is not None:
        load_state_dict_file(loaded.module, Path(weights))
        loaded.weights_source = f"file:{Path(weights).resolve()}"
    if resolution is not None:
        loaded.resolution = int(resolution)
    loaded.module.eval()
    return loaded


def runs_code(spec: str) -> bool:
    """Whether loading `spec` imports or unpickles code from outside this tool (user factory or saved module)."""
    spec = spec.strip()
    if spec.startswith(SAVED_MODULE_PREFIX) or Path(spec).suffix in SAVED_MODULE_SUFFIXES:
        return True
    return ":" in spec and not spec.startswith("timm:")


def require_trusted_spec(spec: str, run_dir: Path, trusted: bool) -> None:
    """Refuse to run the code a run folder's settings name unless the user said they trust that folder."""
    if runs_code(spec) and not trusted:
        raise UsageError(
            f"the run folder '{run_dir}' names model '{spec}', which loading would run as code (an import or an "
            "unpickled module); pass --trust-model-code if you made this folder or trust who did."
        )


def _build(spec: str) -> LoadedModel:
    if spec.startswith(SAVED_MODULE_PREFIX):
        return _load_saved_module(Path(spec[len(SAVED_MODULE_PREFIX):]))
    name = spec.strip().replace("-", "_") if ":" not in spec else spec.strip()
    if name in efficientnet_lite.LITE_VARIANTS:
        return _load_lite(name)
    if spec.strip().startswith("timm:"):  # timm is optional: its module imports it only when asked
        from pipeline.models.timm_models import load_timm

        return load_timm(spec.strip())
    if ":" in spec:
        return _load_user_factory(spec)
    if Path(spec).suffix in SAVED_MODULE_SUFFIXES:
        return _load_saved_module(Path(spec))
    if name in _torchvision_names():
        return _load_torchvision(name)
    close = difflib.get_close_matches(name, known_model_names(), n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    if Path(spec).is_file():
        hint += (f" '{spec}' is a file: to load a whole saved nn.Module from it (this runs code stored in the file), "
                 f"pass --model {SAVED_MODULE_PREFIX}{spec}.")
    raise UsageError(
        f"unknown model '{spec}'.{hint} Use a torchvision classification name (e.g. resnet50), "
        "efficientnet_lite0/1/2, 'package.module:function', or a saved nn.Module as file:PATH or PATH.pt."
    )


def _load_lite(name: str) -> LoadedModel:
    module = efficientnet_lite.build_efficientnet_lite(name)
    source = "random"
    try:
        path = efficientnet_lite.packaged_weights_path(name)
    except ImportError:
        path = None
    if path is not None:
        module.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        source = f"packaged:{path}"
    variant = efficientnet_lite.LITE_VARIANTS[name]
    return LoadedModel(name, module, variant.resolution, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), source)


def _load_torchvision(name: str) -> LoadedModel:
    import torchvision

    module = torchvision.models.get_model(name, weights=None)
    return LoadedModel(name, module, 224, IMAGENET_MEAN, IMAGENET_STD, "random")


@contextlib.contextmanager
def _working_directory_importable() -> Iterator[None]:
    """Put the working directory on sys.path while user code loads, and take it off again.

    Console scripts do not put it there; leaving it there would let a local file named like a later import
    (onnx, tensorrt) shadow the real package.
    """
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        yield
    finally:
        if added and cwd in sys.path:
            sys.path.remove(cwd)


def _load_user_factory(spec: str) -> LoadedModel:
    module_name, _, function_name = spec.partition(":")
    with _working_directory_importable():
        try:
            factory = getattr(importlib.import_module(module_name), function_name)
        except (ImportError, AttributeError, ValueError, TypeError) as exc:
            raise UsageError(
                f"cannot load model factory '{spec}': {exc}. Give 'package.module:function' importable "
                "from the current directory or an installed package."
            ) from exc
        if not callable(factory):
            raise UsageError(f"'{spec}' is not a function that builds a model.")
        module = factory()
    if not isinstance(module, nn.Module):
        raise UsageError(f"'{spec}' returned {type(module).__name__}, not a torch.nn.Module.")
    return LoadedModel(spec, module, 224, IMAGENET_MEAN, IMAGENET_STD, "random")


def _load_saved_module(path: Path) -> LoadedModel:
    """Unpickle a whole nn.Module: this runs code named in the file, so only for a spec that is clearly a file."""
    if not path.is_file():
        raise UsageError(f"model file '{path}' does not exist. Give a path to a saved nn.Module or a model name.")
    try:
        with _working_directory_importable():  # the module's class may live in the user's code
            module = torch.load(path, map_location="cpu", weights_only=False)
    except (ImportError, AttributeError) as exc:  # the class the file names cannot be found
        raise UsageError(
            f"cannot rebuild the saved model in '{path}': {exc}. The class it was saved with must be importable "
            "here; or save its state_dict and pass --model NAME --weights FILE."
        ) from exc
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError) as exc:  # truncated or not a torch file
        raise UsageError(f"cannot read a saved model from '{path}': {exc}") from exc
    if not isinstance(module, nn.Module):
        raise UsageError(
            f"'{path}' holds a {type(module).__name__}, not a whole nn.Module. A state_dict needs the "
            "architecture: pass --model NAME --weights FILE."
        )
    return LoadedModel(str(path), module, 224, IMAGENET_MEAN, IMAGENET_STD, f"saved-module:{path.resolve()}")


def load_state_dict_file(module: nn.Module, path: Path) -> None:
    """Load a state_dict file, explaining exactly which keys do not fit."""
    if not path.is_file():
        raise UsageError(f"weights file '{path}' does not exist.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UsageError(f"cannot read weights from '{path}': {exc}. Expected a state_dict saved with torch.save.") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise UsageError(f"'{path}' does not hold a state_dict (found {type(state).__name__}).")
    describe_state_dict_mismatch(module, state, path)
    module.load_state_dict(state)


def describe_state_dict_mismatch(module: nn.Module, state: dict, path: Path) -> None:
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong_shape = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state and hasattr(state[k], "shape") and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
    if wrong_shape:
        problems.append(f"{len(wrong_shape)} of another shape (e.g. {'; '.join(wrong_shape[:2])})")
    if problems:
        raise UsageError(
            f"weights in '{path}' do not fit the architecture: {'; '.join(problems)}. "
            "Check that --model names the architecture the weights were trained with."
        )
