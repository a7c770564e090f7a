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
    never leaves a truncated result behind; creates the folder. Absolute paths among the values are written as
    `repo_relative` ones, so committed results carry no machine's paths. Returns the path."""
    import json
    import os
    from pathlib import Path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(portable_paths(data), indent=2) + "\n")
    os.replace(tmp, path)
    return path


def parse_number_list(text, flag):
    """The distinct numbers of a comma-separated command-line value, sorted (ValueError naming `flag` otherwise)."""
    try:
        values = sorted({float(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise ValueError(f"{flag} must be comma-separated numbers, got {text!r}") from None
    if not values:
        raise ValueError(f"{flag} lists no value")
    return values


def save_figure(fig, path, dpi=90):
    """Saves a matplotlib figure through a temporary file and a rename (an interrupted benchmark leaves no
    half-written PNG), creates the folder and closes the figure."""
    from pathlib import Path

    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=dpi)
    tmp.replace(path)
    plt.close(fig)


def repo_relative(path):
    """`path` relative to the repository root when it lies inside it or beside it (`../shared/...`, where tests
    read the shared data), else under the home folder as `~/...`, else as given: so committed JSON carries no
    machine's absolute paths."""
    from pathlib import Path

    path, repo = Path(path).resolve(), Path(__file__).resolve().parents[1]
    try:
        return path.relative_to(repo).as_posix()
    except ValueError:
        pass
    try:
        return "../" + path.relative_to(repo.parent).as_posix()
    except ValueError:
        pass
    try:
        return "~/" + path.relative_to(Path.home()).as_posix()
    except ValueError:
        return str(path)


def portable_paths(data):
    """`data` (nested dicts / lists) with every string that is an absolute path replaced by `repo_relative`."""
    if isinstance(data, dict):
        return {key: portable_paths(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [portable_paths(value) for value in data]
    if isinstance(data, str) and data.startswith("/") and "\n" not in data and " " not in data:
        return repo_relative(data)
    return data
