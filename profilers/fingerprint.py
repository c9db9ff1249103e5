"""The device fingerprint: everything a latency depends on besides the network itself."""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import asdict, dataclass, fields


@dataclass(frozen=True)
class DeviceFingerprint:
    device_name: str  # CPU model or GPU name
    device_kind: str  # "cpu" | "gpu"
    compute_capability: str  # GPU compute capability, "" on CPU
    driver: str  # CUDA driver/runtime version, "" on CPU
    backend: str
    backend_version: str
    precision: str
    batch: int
    resolution: int
    threads: int
    torch_version: str
    machine: str  # CPU architecture (x86_64, aarch64)
    options: str = ""  # backend options that change latency (e.g. "cuda-graphs"); "" for none

    def key(self) -> str:
        data = asdict(self)
        if not data["options"]:
            del data["options"]  # keeps the keys of tables written before options existed
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "DeviceFingerprint":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def differences(self, other: "DeviceFingerprint") -> list[str]:
        mine, theirs = asdict(self), asdict(other)
        return [f"{k}: {mine[k]!r} vs {theirs[k]!r}" for k in mine if mine[k] != theirs[k]]

    def describe(self) -> str:
        options = f" / {self.options}" if self.options else ""
        return (f"{self.device_name} / {self.backend} {self.backend_version} / {self.precision} / "
                f"batch {self.batch} / {self.resolution}px / {self.threads} threads{options}")


def cpu_model_name() -> str:
    """The CPU's model name as the kernel reports it (falls back to platform.processor())."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
