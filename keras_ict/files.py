"""File writing that survives a kill, and file digests: the one home of these helpers for every module.

Every write goes to a temporary name beside its target and is renamed into place (a rename is atomic on one
file system), so a reader finds the old file or the new one, never a half-written one.
"""

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; folders are then not guarded
    fcntl = None

LOCK_NAME = ".keras-ict.lock"


class FolderBusyError(ValueError):
    """Another live process holds the folder's lock (a ValueError: the CLI reports it in one line)."""


@contextlib.contextmanager
def folder_lock(folder):
    """Holds an exclusive advisory lock on `folder` (created if missing) while the block runs; raises
    FolderBusyError at once if another live process holds it. The lock dies with its process, so a killed
    writer never leaves a stale lock behind; the lock file itself stays (it is empty but for the holder's pid)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
                raise FolderBusyError(f"{folder} is in use by another live process (pid {holder}); wait for it to "
                                      "finish or use another folder") from None
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield folder
    finally:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


@contextlib.contextmanager
def atomic_output(path, suffix=".tmp"):
    """Yield a temp path beside `path`; on success it is renamed onto `path`, on failure removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600 files
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write_text(path, text):
    with atomic_output(path) as tmp:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


def atomic_write_bytes_npz(path, **arrays):
    """np.savez to a temp name in the target folder, then rename."""
    import numpy as np

    with atomic_output(path, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)


def write_json(path, data):
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_json(path):
    with open(path) as f:
        return json.load(f)


def cache_root():
    """Where keras-ict caches extracted datasets, converted weights and statistics: $KERAS_ICT_CACHE, else
    ~/.cache/keras_ict."""
    root = os.environ.get("KERAS_ICT_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "keras_ict"


_DIGESTS = {}


def sha256_file(path):
    """Hex sha256 of a file's bytes; remembered per (path, size, mtime), so large datasets are read once."""
    path = Path(path)
    stat = path.stat()
    memo = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if memo not in _DIGESTS:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        _DIGESTS[memo] = digest.hexdigest()
    return _DIGESTS[memo]


def publish_dir(tmp_dir, final_dir, overwrite=True):
    """Rename a fully written temp folder into place; an older folder of the same name is replaced (or, with
    overwrite=False, FileExistsError). Between the two renames the old folder is kept as `.NAME.old`."""
    final_dir = Path(final_dir)
    if final_dir.exists():
        if not overwrite:
            raise FileExistsError(f"{final_dir} exists; pass overwrite=True (--overwrite) to replace it")
        old = final_dir.with_name(f".{final_dir.name}.old")
        if old.exists():
            shutil.rmtree(old)
        os.replace(final_dir, old)
        os.replace(tmp_dir, final_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp_dir, final_dir)


def remove_stale_temporaries(folder, prefixes):
    """Delete temporary files/folders a killed writer left in `folder` (one writer per run is assumed)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for path in folder.iterdir():
        if path.name.startswith(tuple(prefixes)):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path.name)
    return removed
