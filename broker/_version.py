"""The installed version, for --version and GetInfo: read from the package metadata, so
pyproject.toml is the only place it is written. Where there is no metadata to read (a
checkout never installed, or linkbroker-cni's wrapper, which runs `python3 -IS` without site
packages) the checkout's pyproject.toml is read instead."""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

__all__ = ["version"]


def version() -> str:
    try:
        return metadata.version("linkbroker")
    except metadata.PackageNotFoundError:
        pass
    try:
        with open(Path(__file__).resolve().parent.parent / "pyproject.toml", "rb") as f:
            return str(tomllib.load(f)["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "unknown"
