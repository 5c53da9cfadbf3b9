"""Uploaded data, written under the data root: a ``.zip`` unpacked, or a ``.csv`` saved, into
``<root>/uploads/<name>/`` so that the spec holds a path under the root and the run reproduces.

Nothing is written outside the root. A zip is checked whole before any file is written: an
entry with an absolute path or a ``..`` part (zip-slip), a symbolic link, an encrypted entry,
or more than :data:`MAX_FILES` files / :data:`MAX_BYTES` bytes unpacked is refused, with the
entry and the limit in the message. macOS' ``__MACOSX/`` and ``.DS_Store`` entries are left
out, and a zip whose files all lie in one folder (a zipped folder) is unpacked without it.

An upload is first written to a temporary folder under ``uploads/`` (:func:`stage`), then
swapped in place of any earlier upload of the same name (:func:`commit`); if the spec then
refuses the data, the earlier upload is put back, so the spec never points at a half-written
or refused folder.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import re
import shutil
import stat
import tempfile
import zipfile
import zlib
from typing import Callable

__all__ = ["ACCEPT", "MAX_BYTES", "MAX_FILES", "UPLOADS", "Staged", "upload_name", "stage", "commit", "discard",
           "csv_header"]

UPLOADS = "uploads"             # the folder under the data root that uploads go to
MAX_BYTES = 200 * 1024 * 1024   # unpacked bytes of one upload: a zip bomb stops here
MAX_FILES = 10_000              # files in one zip
_CHUNK = 1024 * 1024
_JUNK_FOLDERS = frozenset({"__MACOSX"})   # macOS' resource forks: not data
_JUNK_FILES = frozenset({".DS_Store", "Thumbs.db"})


@dataclasses.dataclass(frozen=True)
class Staged:
    """An upload written to ``temp`` (under the data root), not yet in place at ``final``.

    ``entry`` is the data inside the folder: ``""`` for the folder itself, or the name of the
    CSV file at its top (a lone CSV upload, or a zip with one CSV at its top)."""

    upload: str   # the uploaded file's name, for messages
    temp: str
    final: str
    entry: str

    def data_path(self, folder: str | None = None) -> str:
        """The data's path in ``folder`` (default: the final place)."""
        folder = self.final if folder is None else folder
        return os.path.join(folder, self.entry) if self.entry else folder


def upload_name(filename: str) -> str:
    """The folder name an upload gets: its file name without folders or extension, with
    characters other than letters, digits, ``.``, ``_`` and ``-`` made ``_``."""
    base = re.split(r"[\\/]", str(filename))[-1]
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", os.path.splitext(base)[0]).strip(".")
    if not stem:
        raise ValueError(f"upload: the file name {filename!r} leaves no folder name; allowed: a name with letters, "
                         "digits, '.', '_' or '-' before its extension")
    return stem


def _uploads_dir(root: str) -> str:
    folder = os.path.join(os.path.realpath(root), UPLOADS)
    os.makedirs(folder, exist_ok=True)
    real = os.path.realpath(folder)
    if os.path.dirname(real) != os.path.realpath(root):  # uploads/ itself may not be a link leading out
        raise ValueError(f"upload: {folder!r} leads outside the data root {root!r}; remove that link")
    return real


def stage(root: str, filename: str, content: bytes, *, max_bytes: int = MAX_BYTES,
          max_files: int = MAX_FILES) -> Staged:
    """Write an uploaded ``.zip`` (unpacked) or ``.csv`` to a temporary folder under
    ``<root>/uploads/``; a ValueError naming the file when it is refused (nothing is left)."""
    kind = os.path.splitext(str(filename))[1].lower()
    writer = _WRITERS.get(kind)
    if writer is None:
        raise ValueError(f"upload: {filename!r} is a {kind or 'file without extension'}; allowed: "
                         f"{', '.join(_WRITERS)}")
    name = upload_name(filename)
    try:
        uploads = _uploads_dir(root)
        temp = tempfile.mkdtemp(prefix=".upload-", dir=uploads)  # hidden, and never a name an upload can take
    except OSError as e:
        raise ValueError(f"upload: cannot write under the data root {root!r} ({e.strerror}); allowed: a data root "
                         "this kernel may write to") from None
    final = os.path.join(uploads, name)
    try:
        entry = writer(filename, bytes(content), temp, max_bytes, max_files)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return Staged(str(filename), temp, final, entry)


def discard(staged: Staged) -> None:
    """Remove a staged upload that will not be used."""
    shutil.rmtree(staged.temp, ignore_errors=True)


def commit(staged: Staged, apply: Callable[[str], bool]) -> bool:
    """Put the staged upload at its final place, then ``apply(data path)``. When that returns
    False (or raises), the upload goes back to its staged place (:func:`discard` it, or try
    again), the earlier upload of that name is restored, and the result is False.

    The swap is two renames within one folder: an earlier upload is moved aside, the new one
    moved in; each rename is atomic, and ``apply`` sees the folder only after both."""
    aside = None
    if os.path.lexists(staged.final):
        aside = tempfile.mkdtemp(prefix=".replaced-", dir=os.path.dirname(staged.final))
        os.rename(staged.final, os.path.join(aside, "old"))
    os.rename(staged.temp, staged.final)
    ok = False
    try:
        ok = bool(apply(staged.data_path()))
    finally:
        if not ok:
            os.rename(staged.final, staged.temp)
            if aside is not None:
                os.rename(os.path.join(aside, "old"), staged.final)
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)
    return ok


def csv_header(path: str) -> list[str]:
    """The column names in the first non-blank row of a CSV file (UTF-8)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            for row in csv.reader(f):
                if any(cell.strip() for cell in row):
                    return [cell.strip() for cell in row]
    except (UnicodeDecodeError, csv.Error) as e:
        raise ValueError(f"upload: {os.path.basename(path)!r} is not a UTF-8 CSV file ({e})") from None
    raise ValueError(f"upload: {os.path.basename(path)!r} is empty; expected a header row naming the columns")


# -- writers: extension -> fn(filename, content, folder, max_bytes, max_files) -> entry -----------
def _write_csv(filename: str, content: bytes, folder: str, max_bytes: int, max_files: int) -> str:
    del max_files  # one file
    if len(content) > max_bytes:
        raise ValueError(f"upload: {filename!r} is {len(content)} bytes; the limit is {max_bytes} bytes")
    name = upload_name(filename) + ".csv"
    with open(os.path.join(folder, name), "xb") as f:
        f.write(content)
    return name


def _entry_parts(upload: str, info: zipfile.ZipInfo) -> list[str]:
    """The entry's path as folder parts; a ValueError for entries that could land outside."""
    name = info.filename
    # Zip names use '/', but some Windows tools write '\\': both separate parts here, so
    # '..\\evil' is caught as well.
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        raise ValueError(f"upload: {upload!r} holds {name!r}, an absolute path; allowed: paths relative to the "
                         "zip's top (nothing is unpacked)")
    parts = [p for p in re.split(r"[\\/]", name) if p not in ("", ".")]
    if ".." in parts:
        raise ValueError(f"upload: {upload!r} holds {name!r}, which climbs out with '..'; allowed: paths inside "
                         "the zip's top (nothing is unpacked)")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise ValueError(f"upload: {upload!r} holds {name!r}, a symbolic link; allowed: plain files and folders "
                         "(nothing is unpacked)")
    if info.flag_bits & 0x1:
        raise ValueError(f"upload: {upload!r} holds {name!r}, which is encrypted; allowed: a zip without a password")
    return parts


def _is_junk(parts: list[str]) -> bool:
    return parts[0] in _JUNK_FOLDERS or parts[-1] in _JUNK_FILES or parts[-1].startswith("._")


def _write_zip(filename: str, content: bytes, folder: str, max_bytes: int, max_files: int) -> str:
    try:
        archive = zipfile.ZipFile(io.BytesIO(content))  # BytesIO shares the bytes, no copy
        infos = archive.infolist()
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError) as e:
        raise ValueError(f"upload: {filename!r} is not a readable zip file ({e})") from None
    files: list[tuple[zipfile.ZipInfo, list[str]]] = []
    total = 0
    for info in infos:
        parts = _entry_parts(filename, info)
        if info.is_dir() or not parts or _is_junk(parts):
            continue
        files.append((info, parts))
        total += info.file_size
    if not files:
        raise ValueError(f"upload: {filename!r} holds no files")
    if len(files) > max_files or total > max_bytes:
        raise ValueError(f"upload: {filename!r} holds {len(files)} files, {total} bytes unpacked; the limits are "
                         f"{max_files} files and {max_bytes} bytes")
    tops = {parts[0] for _, parts in files}
    if len(tops) == 1 and all(len(parts) > 1 for _, parts in files):  # a zipped folder: unpack its content
        files = [(info, parts[1:]) for info, parts in files]
    real = os.path.realpath(folder)
    written = 0
    for info, parts in files:
        dest = os.path.join(real, *parts)
        if os.path.commonpath([real, os.path.realpath(dest)]) != real:  # belt and braces after the checks above
            raise ValueError(f"upload: {filename!r} entry {info.filename!r} would land outside the upload folder")
        try:
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with archive.open(info) as src, open(dest, "xb") as dst:
                while chunk := src.read(_CHUNK):
                    written += len(chunk)
                    if written > max_bytes:  # the sizes a zip declares are not trusted alone
                        raise ValueError(f"upload: {filename!r} unpacks to more than {max_bytes} bytes, the limit")
                    dst.write(chunk)
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as e:
            raise ValueError(f"upload: {filename!r} entry {info.filename!r} cannot be unpacked ({e})") from None
        except OSError as e:
            raise ValueError(f"upload: {filename!r} entry {info.filename!r} cannot be written ({e.strerror}); a "
                             "zip may not hold two entries of one name") from None
    top_csvs = sorted(parts[0] for _, parts in files if len(parts) == 1 and parts[0].lower().endswith(".csv"))
    return top_csvs[0] if len(top_csvs) == 1 else ""


# upload extension -> writer; the picker's FileUpload accepts these
_WRITERS: dict[str, Callable[[str, bytes, str, int, int], str]] = {".zip": _write_zip, ".csv": _write_csv}
ACCEPT = ",".join(_WRITERS)
