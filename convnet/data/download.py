"""Download the official CIFAR-10 archive, check its MD5 and extract it safely."""

import gzip
import hashlib
import http.client
import lzma
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from pathlib import Path, PurePosixPath, PureWindowsPath

from tqdm.auto import tqdm

from convnet.data.cifar10 import (
    ARCHIVE_NAME,
    BATCH_FILES,
    BATCHES_DIRNAME,
    CIFAR10_MD5,
    CIFAR10_URL,
    CorruptDataError,
    missing_batch_files,
    resolve_root,
)

DOWNLOAD_CHUNK_BYTES = 1 << 20


class DownloadError(RuntimeError):
    """The archive could not be fetched or failed its checksum; the message says what to do by hand."""


class UnsafeArchiveError(ValueError):
    """The archive holds a member that could write outside the target directory (or is not a plain file)."""



def _complete_batches_dir(root):
    for candidate in (root / BATCHES_DIRNAME, root):
        if candidate.is_dir() and not missing_batch_files(candidate):
            return candidate
    return None


def _manual_instructions(root):
    return (
        f"To install CIFAR-10 by hand, download {CIFAR10_URL} (MD5 {CIFAR10_MD5}) elsewhere and either put it "
        f"at {root / ARCHIVE_NAME} and run `python -m convnet.data download --root {root}` again (it verifies "
        f"and extracts it), or extract it yourself so that the files {', '.join(BATCH_FILES)} are in "
        f"{root / BATCHES_DIRNAME}/. To keep the data somewhere else, set CONVNET_DATA to that directory "
        "(or pass root=... / --root)."
    )


def file_md5(path):
    """Hex MD5 of a file, read in chunks."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(DOWNLOAD_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch(url, archive, md5, progress, timeout):
    """Download ``url`` to ``archive``.part, check the MD5, then rename to ``archive``.

    The rename happens only after the checksum matches, so a file named ``archive`` is
    always complete; anything that goes wrong removes the .part file.
    """
    part = archive.with_name(archive.name + ".part")
    digest = hashlib.md5()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(part, "wb") as out:
            length = response.headers.get("Content-Length")
            with tqdm(total=int(length) if length else None, unit="B", unit_scale=True, unit_divisor=1024,
                      desc=archive.name, disable=not progress) as bar:
                while chunk := response.read(DOWNLOAD_CHUNK_BYTES):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        part.unlink(missing_ok=True)
        reason = getattr(exc, "reason", None) or exc
        raise DownloadError(f"could not download {url}: {reason}. {_manual_instructions(archive.parent)}") from exc
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    actual = digest.hexdigest()
    if actual != md5:
        part.unlink(missing_ok=True)
        raise DownloadError(
            f"the file downloaded from {url} has MD5 {actual}, expected {md5}: it is truncated or not the "
            f"official archive, so it was deleted. Try again later. {_manual_instructions(archive.parent)}"
        )
    os.replace(part, archive)


def _check_member(member):
    """Raise UnsafeArchiveError unless ``member`` is a plain file or directory with a relative,
    '..'-free path: anything else could write outside the directory it is extracted to."""
    name = member.name
    if not name:
        raise UnsafeArchiveError("refusing an archive member with an empty name")
    windows = PureWindowsPath(name)  # C:\x or \\server\x: absolute on Windows
    if PurePosixPath(name).is_absolute() or windows.is_absolute() or windows.drive:
        raise UnsafeArchiveError(f"refusing archive member {name!r}: absolute path")
    if ".." in PurePosixPath(name).parts or ".." in windows.parts:
        raise UnsafeArchiveError(f"refusing archive member {name!r}: its path leaves the target directory ('..')")
    if member.issym() or member.islnk():
        raise UnsafeArchiveError(f"refusing archive member {name!r}: a link (to {member.linkname!r})")
    if not (member.isfile() or member.isdir()):
        raise UnsafeArchiveError(f"refusing archive member {name!r}: not a regular file or directory "
                                 f"(tar type {member.type!r})")


def extract_archive(archive, root):
    """Extract ``archive``'s ``cifar-10-batches-py/`` into ``root``, safely and all-or-nothing.

    Every member is checked before anything is written (see :class:`UnsafeArchiveError`);
    extraction goes to a temporary directory inside ``root`` that is renamed into place only
    once complete, so a crash never leaves a half-extracted ``cifar-10-batches-py``.
    Returns the batches directory.
    """
    archive, root = Path(archive), Path(root)
    target = root / BATCHES_DIRNAME
    staging = Path(tempfile.mkdtemp(prefix=".extract-cifar-10-", dir=root))
    try:
        try:
            with tarfile.open(archive, "r:*") as tar:
                members = tar.getmembers()
                for member in members:
                    _check_member(member)
                for member in members:
                    # Written by hand rather than tar.extract: no owners, modes or times from
                    # the archive, and nothing but the checked names is ever created.
                    path = staging / member.name
                    if member.isdir():
                        path.mkdir(parents=True, exist_ok=True)
                        continue
                    path.parent.mkdir(parents=True, exist_ok=True)
                    with tar.extractfile(member) as source, open(path, "wb") as out:
                        shutil.copyfileobj(source, out, DOWNLOAD_CHUNK_BYTES)
        except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, gzip.BadGzipFile) as exc:
            raise CorruptDataError(f"{archive} is not a readable tar archive: {exc}") from exc
        missing = missing_batch_files(staging / BATCHES_DIRNAME)
        if missing:
            raise CorruptDataError(
                f"{archive} does not hold {', '.join(f'{BATCHES_DIRNAME}/{name}' for name in missing)}; "
                "is it the CIFAR-10 python version?"
            )
        os.rename(staging / BATCHES_DIRNAME, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def download_cifar10(root=None, url=CIFAR10_URL, progress=True, md5=CIFAR10_MD5, timeout=60):
    """Make sure ``root/cifar-10-batches-py`` holds the official batches; returns that directory.

    Nothing is fetched when the batches are already there, and an existing
    ``root/cifar-10-python.tar.gz`` is verified and extracted instead of downloaded again.
    The download shows a tqdm bar (``progress``), must match ``md5`` and is extracted with
    :func:`extract_archive`. Raises :class:`DownloadError` (network trouble or a checksum
    mismatch; the message explains how to place the files by hand), :class:`UnsafeArchiveError`,
    or FileExistsError for an incomplete ``cifar-10-batches-py`` that would be overwritten.
    ``timeout`` is in seconds, per network operation.
    """
    root = resolve_root(root)
    existing = _complete_batches_dir(root)
    if existing is not None:
        return existing
    target = root / BATCHES_DIRNAME
    if target.exists():
        raise FileExistsError(
            f"{target} exists but lacks {', '.join(missing_batch_files(target))}; complete it by hand, "
            "or delete it and download again"
        )
    root.mkdir(parents=True, exist_ok=True)
    archive = root / ARCHIVE_NAME
    if archive.is_file():
        actual = file_md5(archive)
        if actual != md5:
            raise DownloadError(
                f"{archive} has MD5 {actual}, expected {md5}: it is damaged or not the official archive. "
                "Delete it and download again."
            )
    else:
        _fetch(url, archive, md5, progress, timeout)
    return extract_archive(archive, root)
