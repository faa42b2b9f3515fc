"""The installed version, for --version and GetInfo: read from the package metadata, so
pyproject.toml is the only place it is written."""

from __future__ import annotations

from importlib import metadata

__all__ = ["version"]


def version() -> str:
    try:
        return metadata.version("linkbroker")
    except metadata.PackageNotFoundError:  # a source checkout that was never installed
        return "unknown"
