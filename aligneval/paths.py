"""Paths built from user input: names that become file names, and output locations checked up front.

Anything that becomes part of a path (model, split, recipe names) is untrusted: `check_name` refuses
separators and other unsafe characters, and `inside` resolves the result and refuses anything that
would land outside the folder it belongs in. Output locations (`--out`, `--junit`, `--summary`) are
checked by `check_output_dir` / `check_output_file` before any work, so a typo costs a second, not a
finished evaluation. Both checks only look: nothing is created until the work is done.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from aligneval.errors import ArtifactError, UsageError

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+-]*$")
SAFE_CHARS = "letters, digits and . _ - @ + (not starting with . - _ @ +)"
MAX_NAME = 128


def check_name(name: object, what: str) -> str:
    """`name` if it can safely name a file or folder; else a UsageError that starts with `what`."""
    text = name if isinstance(name, str) else ""
    if not text or len(text) > MAX_NAME or not SAFE_NAME.match(text) or text.endswith("."):
        shown = repr(name) if isinstance(name, str) else f"{name!r} ({type(name).__name__})"
        raise UsageError(f"{what} {shown}: use {SAFE_CHARS}, at most {MAX_NAME} characters (it names a file)")
    return text


def inside(root: str | Path, *parts: str, what: str = "path") -> Path:
    """`root/parts...`, refusing (ArtifactError) a result that resolves outside `root`.
    Names are checked where they enter (`check_name`); this is the last line of defence."""
    base = Path(root)
    target = base.joinpath(*parts)
    resolved_root = base.resolve()
    resolved = target.resolve()
    if resolved != resolved_root and resolved_root not in resolved.parents:
        raise ArtifactError(f"{what} {'/'.join(parts)!r} would resolve outside {base} ({resolved}); refused")
    return target


def _blocking_file(path: Path) -> Path | None:
    """The first existing non-folder among `path`'s ancestors (`path` itself excluded), if any."""
    for parent in reversed(path.absolute().parents):
        if parent.exists() and not parent.is_dir():
            return parent
    return None


def _nearest_existing(path: Path) -> Path:
    for candidate in (path.absolute(), *path.absolute().parents):
        if candidate.exists():
            return candidate
    return Path(path.absolute().anchor)


def _writable(folder: Path) -> bool:
    return os.access(folder, os.W_OK | os.X_OK)


def check_output_dir(path: str | Path, flag: str = "--out") -> Path:
    """A folder we will create or write into: not a file, not under a file, writable. Returns it."""
    path = Path(path).expanduser()
    if path.is_symlink() and not path.exists():
        raise UsageError(f"{flag} {path}: is a broken symbolic link; choose another {flag}")
    if path.exists() and not path.is_dir():
        raise UsageError(f"{flag} {path}: is a file, not a folder; choose another {flag}")
    blocking = _blocking_file(path)
    if blocking is not None:
        raise UsageError(f"{flag} {path}: {blocking} is a file, so no folder can be made under it; "
                         f"choose another {flag}")
    existing = _nearest_existing(path)
    if not _writable(existing):
        raise UsageError(f"{flag} {path}: {existing} is not writable; choose another {flag}")
    return path


def check_output_file(path: str | Path, flag: str) -> Path:
    """A file we will write (or append to): not a folder, its folder creatable and writable."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise UsageError(f"{flag} {path}: is a folder; give a file name")
    if path.is_symlink() and not path.exists():
        raise UsageError(f"{flag} {path}: is a broken symbolic link; choose another {flag}")
    blocking = _blocking_file(path)
    if blocking is not None:
        raise UsageError(f"{flag} {path}: {blocking} is a file, so {path.name} cannot be written under it; "
                         f"choose another {flag}")
    if path.exists():
        if not os.access(path, os.W_OK):
            raise UsageError(f"{flag} {path}: the file is not writable; choose another {flag}")
        return path
    existing = _nearest_existing(path.parent)
    if not _writable(existing):
        raise UsageError(f"{flag} {path}: {existing} is not writable; choose another {flag}")
    return path
