"""Installed package versions, read from package metadata without importing the packages: what
results, caches and model cards record, so a number can be traced to the code that computed it."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def package_versions(names) -> dict[str, str | None]:
    """{name: version, or None when the package is not installed}, in the order given."""
    found: dict[str, str | None] = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found
