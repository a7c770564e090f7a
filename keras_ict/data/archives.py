"""Tar archives of image folders, extracted once into a cache, refusing unsafe members (no TensorFlow needed)."""

import os
import shutil
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

from keras_ict.files import cache_root, sha256_file

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


def default_cache_dir():
    """Where archives are extracted: ``$KERAS_ICT_CACHE/datasets``, else ``~/.cache/keras_ict/datasets``."""
    return cache_root() / "datasets"


def extract_archive(archive, cache_dir=None):
    """Extract a tar archive (``.tar.gz``, ``.tgz``, ...) once and return the extracted folder.

    The folder is ``<cache>/<archive stem>-<sha256 of the archive>``, so a changed archive gets a new folder
    and an unchanged one is reused without reading it again past the hash. Extraction goes to a temporary
    folder in the same cache that is renamed into place only when complete, so an interrupted extraction
    never leaves a half-filled cache entry (a stale ``.*.partial`` folder may remain; it is never read).
    Members with absolute paths or ``..`` components, links leaving the archive and device files are
    rejected with a ValueError before anything is cached.
    """
    archive = Path(archive).expanduser()
    if not archive.is_file():
        raise FileNotFoundError(f"archive not found: {str(archive)!r}")
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    digest = sha256_file(archive)
    final = cache / f"{_archive_stem(archive.name)}-{digest}"
    if final.is_dir():
        return final
    cache.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=cache))
    try:
        _extract_into(archive, partial)
        os.chmod(partial, 0o755)  # mkdtemp makes it private
        try:
            os.rename(partial, final)
        except OSError:
            if not final.is_dir():  # not a lost race with another process extracting the same archive
                raise
            shutil.rmtree(partial, ignore_errors=True)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return final


def _archive_stem(name):
    lower = name.lower()
    for suffix in ARCHIVE_SUFFIXES:
        if lower.endswith(suffix):
            return name[: -len(suffix)] or "archive"
    return name


def _extract_into(archive, destination):
    """Stream the archive member by member into `destination`, refusing unsafe members."""
    with tarfile.open(archive, "r:*") as tar:
        for member in tar:
            name = member.name
            parts = PurePosixPath(name.replace("\\", "/")).parts
            if name.startswith(("/", "\\")) or os.path.isabs(name) or (parts and parts[0].endswith(":")):
                raise ValueError(f"refusing to extract {str(archive)!r}: member {name!r} has an absolute path")
            if ".." in parts:
                raise ValueError(f"refusing to extract {str(archive)!r}: member {name!r} contains '..'")
            if hasattr(tarfile, "data_filter"):
                try:
                    tar.extract(member, destination, set_attrs=False, filter="data")
                except tarfile.FilterError as error:
                    raise ValueError(f"refusing to extract {str(archive)!r}: {error}") from error
            elif member.isfile() or member.isdir():  # pragma: no cover - Pythons without extraction filters
                tar.extract(member, destination, set_attrs=False)
