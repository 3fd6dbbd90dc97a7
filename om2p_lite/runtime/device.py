"""Where tensors live: CUDA when there is one, else the CPU; ``OM2P_DEVICE`` overrides.

Not a distributed launcher: one process, one device.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import torch

DEVICE_ENV = "OM2P_DEVICE"


def pick_device(requested: str | None = None) -> torch.device:
    """Return ``requested`` or ``$OM2P_DEVICE`` if set, else ``cuda`` if available, else ``cpu``."""
    name = requested if requested is not None else os.environ.get(DEVICE_ENV, "").strip()
    if not name:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"{DEVICE_ENV}={name!r} is not a device name; use 'cpu', 'cuda' "
                         f"or 'cuda:N'") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} was asked for but CUDA is not available here; "
                         f"unset {DEVICE_ENV} or set it to 'cpu'")
    if device.type == "cuda" and device.index is not None and \
            device.index >= torch.cuda.device_count():
        raise ValueError(f"device {name!r} does not exist: this machine has "
                         f"{torch.cuda.device_count()} CUDA device(s)")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device type {device.type!r} is not supported; use 'cpu' or 'cuda'")
    return device


def describe_device(device: torch.device) -> str:
    """One line naming the device, for logs and provenance records."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)}), torch {torch.__version__}"
    return f"cpu ({torch.get_num_threads()} threads), torch {torch.__version__}"


def short_device(described: str | None) -> str:
    """``describe_device``'s text without the torch version or thread count: 'cpu' or
    'cuda (NVIDIA H100 80GB HBM3)'; '' when a result predates the record."""
    if not described:
        return ""
    name = str(described).split(", torch")[0]
    return "cpu" if name.startswith("cpu") else name


def devices_of(devices: Iterable[str]) -> str:
    """The distinct recorded devices of some runs, joined by ' + ' ('' when none); entries
    that are already such joins count by their parts."""
    return " + ".join(sorted({d for x in devices for d in str(x).split(" + ")} - {""}))
