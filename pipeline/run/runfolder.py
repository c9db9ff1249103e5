"""A run's own folder: one file per finished stage, written atomically, so a rerun resumes.

The folder records the settings that made it (`settings.json`, with a hash). Rerunning with the same
settings continues after the last finished stage; a finished run is never redone unless the caller
asks to overwrite it; a folder holding a run with other settings is refused rather than mixed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from pipeline.core.atomic import save_torch_atomic, write_json_atomic, write_text_atomic
from pipeline.core.clock import now_iso
from pipeline.core.errors import UsageError

SETTINGS_FILE = "settings.json"
COMPLETE_FILE = "report.json"


def settings_hash(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:10]


class RunFolder:
    def __init__(self, path: Path):
        self.path = Path(path)

    # -- opening ------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: Path, settings: dict, overwrite: bool = False) -> "RunFolder":
        """Create the folder, or reopen it to resume; refuse to mix runs with different settings."""
        folder = cls(path)
        wanted = settings_hash(settings)
        if folder.path.exists() and overwrite:
            if not (folder.path / SETTINGS_FILE).exists() and any(folder.path.iterdir()):
                raise UsageError(f"'{folder.path}' is not a run folder; refusing to delete it even with --overwrite.")
            shutil.rmtree(folder.path)
        if folder.path.exists() and any(folder.path.iterdir()):
            existing = folder.read_json(SETTINGS_FILE) if (folder.path / SETTINGS_FILE).exists() else None
            if existing is None:
                raise UsageError(f"'{folder.path}' exists and is not a run folder; choose another --out.")
            if existing.get("hash") != wanted:
                changed = sorted(k for k in settings if existing.get("settings", {}).get(k) != settings[k])
                raise UsageError(
                    f"run folder '{folder.path}' holds a run with other settings (differs in: {', '.join(changed) or 'format'}). "
                    "Choose another --out, or pass --overwrite to replace it."
                )
            return folder
        folder.path.mkdir(parents=True, exist_ok=True)
        folder.write_json(SETTINGS_FILE, {"hash": wanted, "created_at": now_iso(), "settings": settings})
        return folder

    @property
    def is_complete(self) -> bool:
        return (self.path / COMPLETE_FILE).exists()

    # -- stage files ----------------------------------------------------------------------------
    def file(self, name: str) -> Path:
        return self.path / name

    def has(self, name: str) -> bool:
        return (self.path / name).exists()

    def read_json(self, name: str) -> dict:
        try:
            return json.loads((self.path / name).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise UsageError(f"cannot read '{self.path / name}': {exc}. The run folder is damaged; rerun with --overwrite.") from None

    def write_json(self, name: str, data: dict) -> Path:
        write_json_atomic(self.path / name, data)
        return self.path / name

    def write_text(self, name: str, text: str) -> Path:
        return write_text_atomic(self.path / name, text)

    def save_tensors(self, name: str, state: dict) -> Path:
        return save_torch_atomic(self.path / name, state)
