"""What every benchmark records next to its figures: package versions and peak memory."""

import platform
import resource
import sys
from importlib import metadata

PACKAGES = ("keras", "tensorflow", "tensorflow-cpu", "jax", "jaxlib", "torch", "numpy")


def versions(packages=PACKAGES):
    """Python and the installed versions of `packages` (missing ones left out); reads metadata, imports nothing."""
    out = {"python": platform.python_version()}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def maxrss_mib():
    """This process's peak resident memory in MiB (Linux reports ru_maxrss in KiB, macOS in bytes)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (2**20 if sys.platform == "darwin" else 2**10)


def write_json(path, data):
    """Writes `data` as indented JSON through a temporary file and a rename, so an interrupted benchmark
    never leaves a truncated result behind; creates the folder. Returns the path."""
    import json
    import os
    from pathlib import Path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def repo_relative(path):
    """`path` relative to the repository root when it lies inside it, else as given (home shortened to ~), so
    committed JSON carries no machine's absolute paths."""
    from pathlib import Path

    path, repo = Path(path).resolve(), Path(__file__).resolve().parents[1]
    try:
        return path.relative_to(repo).as_posix()
    except ValueError:
        try:
            return "~/" + path.relative_to(Path.home()).as_posix()
        except ValueError:
            return str(path)
