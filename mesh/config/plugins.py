"""Importing the modules mesh.yaml names (agents, tools): next to mesh.yaml first, with one-line errors.

Where a module is looked for, in order: mesh.yaml's folder, the installed
packages, and the folder `mesh` was started from (``MESH_START_DIR``, set by
the CLI and inherited by the processes `mesh up` starts), as ``python -m``
would: `mesh up -c /elsewhere/mesh.yaml` run from a checkout finds the
checkout's modules (``tests.support.agents.tck``) with no PYTHONPATH.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from pathlib import Path
from types import ModuleType

from mesh.errors import ModuleImportError  # noqa: F401 - re-exported

START_DIR_VARIABLE = "MESH_START_DIR"


def import_module(path: str, search_dir: Path | None = None) -> ModuleType:
    """Import ``path``; ``search_dir`` (mesh.yaml's directory) goes on sys.path first.

    So an agent or a tool server can be a plain module next to mesh.yaml, with
    no packaging.
    """
    if search_dir is not None and str(search_dir) not in sys.path:
        sys.path.insert(0, str(search_dir))
    start_dir = os.environ.get(START_DIR_VARIABLE)
    if start_dir and start_dir not in sys.path:
        sys.path.append(start_dir)  # last: it never hides an installed package
    try:
        return importlib.import_module(path)
    except ModuleNotFoundError as exc:
        if exc.name and (path == exc.name or path.startswith(exc.name + ".")):
            places = [f"{search_dir} (mesh.yaml's folder)"] if search_dir is not None else []
            places += ["the installed packages"]
            if start_dir and start_dir != str(search_dir):
                places.append(f"{start_dir} (where mesh was started)")
            raise ModuleImportError(f"cannot import {path!r}: no such module (looked in {', '.join(places)})") from None
        raise ModuleImportError(f"cannot import {path!r}: {describe_exception(exc)}") from None
    except Exception as exc:  # the module's own code failed: say where
        raise ModuleImportError(f"cannot import {path!r}: {describe_exception(exc)}") from None


def describe_exception(exc: BaseException) -> str:
    """'ErrorType: message (file:line)', the line being the innermost frame outside importlib."""
    frames = traceback.extract_tb(exc.__traceback__)
    frames = [f for f in frames if "importlib" not in f.filename] or frames
    where = f" ({frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"
