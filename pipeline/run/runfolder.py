"""A run's own folder: one file per finished stage, written atomically, so a rerun resumes.

The folder records the settings that made it (`settings.json`, with a hash and this tool's marker).
Rerunning with the same settings continues after the last finished stage; a finished run is never
redone unless the caller asks to overwrite it; a folder holding a run with other settings is refused
rather than mixed. One process owns a folder at a time (an OS file lock, which dies with its process,
plus a record of who holds it); `--overwrite` deletes only a folder this tool recognisably made; a
stage file that no longer reads is reported by name and set aside, so its stage is done again.
"""

from __future__ import annotations

import atexit
import errno
import fnmatch
import hashlib
import json
import os
import shutil
import socket
import sys
from pathlib import Path
from typing import IO

from pipeline.core.atomic import save_torch_atomic, write_json_atomic, write_text_atomic
from pipeline.core.clock import now_iso
from pipeline.core.errors import UsageError
from pipeline.core.locks import try_exclusive_lock
from pipeline.core.progress import Log, quiet_log

SETTINGS_FILE = "settings.json"
COMPLETE_FILE = "report.json"
TOOL_MARKER = "practise-pipeline run folder"  # settings.json's "tool": what --overwrite may delete
LOCK_FILE = ".owner.lock"
OWNER_FILE = ".owner.json"
_OWNERSHIP_FILES = (LOCK_FILE, OWNER_FILE)
# files rewritten on every opening, so never judged damaged
_REWRITTEN = (SETTINGS_FILE, "data.json", "candidates.json")
# a damaged stage file takes these with it: the files made from it (a redone stage may choose differently)
_RECOVERY_ON = ["recovered_state_dict.pt", "dropped_blocks.json", "recovery.json", "reselection.json", "evaluation.json",
                "compressed_state_dict.pt", "export.json", "report.json", "report.md"]
_SELECTION_ON = ["selection.json", "recovery_checkpoint.pt", "synthetic_images.pt", *_RECOVERY_ON]
_MADE_FROM = {
    # the plans are chosen from the table, the scores and the precision survey: a redone one may choose otherwise
    **{name: _SELECTION_ON for name in ("latency_table.json", "recoverability.json", "precisions.json")},
    "selection.json": _SELECTION_ON[1:],
    "synthetic_images.pt": ["recovery_checkpoint.pt"],
    **{name: _RECOVERY_ON[_RECOVERY_ON.index(name) + 1:] for name in _RECOVERY_ON[:3]},
    "evaluation.json": ["compressed_state_dict.pt", "export.json", "report.json", "report.md"],
    "compressed_state_dict.pt": ["evaluation.json", "export.json", "report.json", "report.md"],
    "export.json": ["report.json", "report.md"],
    "report.json": ["report.md"],
}
_TORCH_STAGE_FILES = ("recovery_checkpoint.pt", "synthetic_images.pt", "recovered_state_dict.pt",
                      "compressed_state_dict.pt")
_REPORT = ("report.json", "report.md")  # the finished-run marker and its text: rewritten after a stage is redone
# folders this process owns: their lock files stay open (and locked) until released or the process ends
_OWNED: dict[Path, IO] = {}


def _release_all() -> None:
    """At a normal exit (errors and Ctrl-C included) owned folders are handed back with their records."""
    for path in list(_OWNED):
        RunFolder(path).release()


atexit.register(_release_all)


def settings_hash(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:10]


class RunFolder:
    def __init__(self, path: Path):
        self.path = Path(path)

    # -- opening ------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: Path, settings: dict, overwrite: bool = False, log: Log = quiet_log) -> "RunFolder":
        """Own the folder (create it, or reopen it to resume); refuse to mix runs with different settings."""
        folder = cls(path)
        if folder.path.exists() and not folder.path.is_dir():
            raise UsageError(f"'{folder.path}' exists and is not a folder; choose another --out.")
        if folder._holds_files():
            folder._recognised_settings()  # a foreign folder is refused before anything is written into it
        folder.path.mkdir(parents=True, exist_ok=True)
        folder.take_ownership(log)
        existing = folder._recognised_settings() if folder._holds_files() else None  # as the owner sees it
        if existing is not None and overwrite:
            folder._clear()
            existing = None
        wanted = settings_hash(settings)
        if existing is not None:
            if existing.get("hash") != wanted:
                changed = sorted(k for k in settings if existing.get("settings", {}).get(k) != settings[k])
                raise UsageError(
                    f"run folder '{folder.path}' holds a run with other settings (differs in: {', '.join(changed) or 'format'}). "
                    "Choose another --out, or pass --overwrite to replace it."
                )
            folder._set_aside_damaged_files(log)
            return folder
        folder.write_json(SETTINGS_FILE, {"tool": TOOL_MARKER, "hash": wanted, "created_at": now_iso(),
                                          "settings": settings})
        return folder

    def _holds_files(self) -> bool:
        return self.path.is_dir() and any(p.name not in _OWNERSHIP_FILES for p in self.path.iterdir())

    def _recognised_settings(self) -> dict:
        """settings.json of a folder that holds files, when this tool made it; anything else is refused."""
        settings_file = self.path / SETTINGS_FILE
        try:
            recorded = json.loads(settings_file.read_text())
        except FileNotFoundError:
            recorded = None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UsageError(
                f"'{settings_file}' cannot be read ({exc}), so '{self.path}' is not recognisably a run folder: refusing "
                "to delete it even with --overwrite; remove it yourself or choose another --out."
            ) from exc
        if not is_run_settings(recorded):
            raise UsageError(
                f"'{self.path}' exists and is not a run folder (no settings.json written by this tool): refusing to "
                "delete it even with --overwrite; choose another --out."
            )
        return recorded

    def _clear(self) -> None:
        """--overwrite: empty a folder this tool made, keeping the lock this process holds on it."""
        for child in self.path.iterdir():
            if child.name in _OWNERSHIP_FILES:
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()

    # -- ownership ----------------------------------------------------------------------------
    def take_ownership(self, log: Log = quiet_log) -> None:
        """Lock the folder for this process, or stop naming the process that holds it.

        The OS drops the lock when its process dies, so a lock left by a killed run is taken over.
        """
        key = self.path.resolve()
        if key in _OWNED:
            return
        try:
            handle = open(self.path / LOCK_FILE, "a+")
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise
            raise UsageError(f"run folder '{self.path}' is not writable ({exc.strerror}); make it writable or choose "
                             "another --out.") from exc
        if not try_exclusive_lock(handle):
            handle.close()
            holder = self._owner_record() or {}
            raise UsageError(
                f"run folder '{self.path}' is in use by process {holder.get('pid', '?')} on host "
                f"{holder.get('host', '?')} since {holder.get('started_at', '?')} ({holder.get('command', 'unknown command')}). "
                "Wait for it to finish (then rerun to continue), stop that process, or choose another --out."
            )
        previous = self._owner_record()
        if previous and previous.get("pid") != os.getpid():
            log(f"taking over run folder {self.path} from process {previous.get('pid')} on host {previous.get('host')} "
                f"(started {previous.get('started_at')}), which stopped without finishing")
        write_json_atomic(self.path / OWNER_FILE, {"pid": os.getpid(), "host": socket.gethostname(),
                                                   "started_at": now_iso(), "command": " ".join(sys.argv)[:300]})
        _OWNED[key] = handle

    def release(self) -> None:
        """Give up ownership (the process ending does the same)."""
        handle = _OWNED.pop(self.path.resolve(), None)
        if handle is not None:
            (self.path / OWNER_FILE).unlink(missing_ok=True)
            handle.close()

    def _owner_record(self) -> dict | None:
        try:
            record = json.loads((self.path / OWNER_FILE).read_text())
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) else None

    # -- damaged stage files ----------------------------------------------------------------------
    def _set_aside_damaged_files(self, log: Log) -> None:
        """Rename a stage file that no longer reads (and the files made from it) so that stage runs again."""
        for path in sorted(self.path.iterdir()):
            if path.name in _REWRITTEN or not path.exists() or not _is_damaged(path):
                continue
            made_from = [*_MADE_FROM.get(path.name, []), *_REPORT]  # a finished run is reopened to redo the stage
            later = [n for n in dict.fromkeys(made_from) if n != path.name and (self.path / n).exists()]
            log(f"run folder file {path.name} is damaged (it no longer reads); setting it aside as "
                f"{path.name}.damaged and redoing the stage that writes it"
                + (f" (and discarding {', '.join(later)}, made from it)" if later else ""))
            os.replace(path, path.with_name(path.name + ".damaged"))
            for name in later:
                (self.path / name).unlink()

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
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UsageError(f"cannot read '{self.path / name}': {exc}. The run folder is damaged; rerun the same "
                             "command to redo that stage, or pass --overwrite.") from exc

    def write_json(self, name: str, data: dict) -> Path:
        write_json_atomic(self.path / name, data)
        return self.path / name

    def write_text(self, name: str, text: str) -> Path:
        return write_text_atomic(self.path / name, text)

    def save_tensors(self, name: str, state: dict) -> Path:
        return save_torch_atomic(self.path / name, state)


class FollowerRunFolder(RunFolder):
    """The run folder as a rank other than 0 of a torchrun launch sees it: read, never written (rank 0 owns
    and writes it), except the files matching `own` (the rank's partial scores, so a kill loses at most a block)."""

    def __init__(self, path: Path, own: str):
        super().__init__(path)
        self.own = own

    def _may_write(self, name: str) -> None:
        if not fnmatch.fnmatchcase(name, self.own):
            raise RuntimeError(f"only rank 0 writes the run folder, and another rank tried to write {name}")

    def write_json(self, name: str, data: dict) -> Path:
        self._may_write(name)
        return super().write_json(name, data)

    def write_text(self, name: str, text: str) -> Path:
        self._may_write(name)
        return super().write_text(name, text)

    def save_tensors(self, name: str, state: dict) -> Path:
        self._may_write(name)
        return super().save_tensors(name, state)

    def take_ownership(self, log: Log = quiet_log) -> None:
        raise RuntimeError("only rank 0 owns the run folder")


def is_run_settings(recorded) -> bool:
    """settings.json content this tool wrote: its marker, or (older folders) a hash that matches the settings."""
    if not isinstance(recorded, dict) or not isinstance(recorded.get("settings"), dict):
        return False
    return recorded.get("tool") == TOOL_MARKER or recorded.get("hash") == settings_hash(recorded["settings"])


def _is_damaged(path: Path) -> bool:
    """True for a JSON or torch stage file that does not read back (truncated, overwritten, half-copied)."""
    if path.suffix == ".json" and not path.name.startswith("."):
        try:
            json.loads(path.read_text())
            return False
        except (UnicodeDecodeError, ValueError):
            return True
    if path.name in _TORCH_STAGE_FILES:
        import pickle

        import torch

        try:
            torch.load(path, map_location="cpu", weights_only=True)
            return False
        except (RuntimeError, EOFError, ValueError, pickle.UnpicklingError):
            return True
    return False
