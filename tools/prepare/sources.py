"""A download's files, on disk or inside zip/tar archives, read completely once and mapped to a layout."""

from __future__ import annotations

import os
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable


from .common import PrepareError


CHUNK = 1 << 20


@dataclass(frozen=True)
class Entry:
    """One file of a download: a file on disk, or a member `rel` of a zip/tar archive."""

    rel: str  # '/'-separated path below --source (disk) or inside the archive
    disk: Path | None = None
    archive: Path | None = None

    @property
    def name(self) -> str:
        return self.rel.rsplit("/", 1)[-1]

    def where(self) -> str:
        """The file as messages name it: a path, or archive:member."""
        return str(self.disk) if self.disk else f"{self.archive}:{self.rel}"


# The archives list_archive has opened and read, private to this module: one pass per archive per run.
_ARCHIVES: dict[Path, zipfile.ZipFile | tarfile.TarFile] = {}
_TAR_MEMBERS: dict[Path, dict[str, tarfile.TarInfo]] = {}


def list_archive(path: Path) -> list[str]:
    """List an archive's files after reading it completely, once per run.

    Reading everything first matters because a truncated download often still opens (a tgz lists its
    members up to the break), and would otherwise fail half-way through the conversion.
    """
    if path in _ARCHIVES:
        archive = _ARCHIVES[path]
        return list(_TAR_MEMBERS[path]) if path in _TAR_MEMBERS else zip_files(archive)
    try:
        if path.name.removesuffix(".part").endswith(".zip"):
            archive = zipfile.ZipFile(path)
            bad = archive.testzip()
            if bad is not None:
                raise zipfile.BadZipFile(f"member {bad} fails its CRC check")
            names = zip_files(archive)
        else:
            archive = tarfile.open(path, "r:*")
            _TAR_MEMBERS[path] = read_tar(archive)
            names = list(_TAR_MEMBERS[path])
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, ValueError, zlib.error) as err:
        reason = " ".join(str(err).split())  # tarfile's reasons span lines; errors are one line
        raise PrepareError(f"{path} is truncated or corrupt ({reason}): delete it and download it "
                           f"again") from err
    _ARCHIVES[path] = archive
    return names


def zip_files(archive: zipfile.ZipFile) -> list[str]:
    return [info.filename for info in archive.infolist() if not info.is_dir()]


def read_tar(archive: tarfile.TarFile) -> dict[str, tarfile.TarInfo]:
    """Read every member of a tar to its end (a gzip stream is only checked when read)."""
    members = {}
    for member in archive:
        if member.isfile():
            with archive.extractfile(member) as stream:
                while stream.read(CHUNK):
                    pass
            members[member.name] = member
    return members


def close_archives() -> None:
    for archive in _ARCHIVES.values():
        archive.close()
    _ARCHIVES.clear()
    _TAR_MEMBERS.clear()


def rename_archive(old: Path, new: Path) -> None:
    """Follow a verified archive renamed on disk (a finished .part download): its open handle is kept."""
    _ARCHIVES[new] = _ARCHIVES.pop(old)
    if old in _TAR_MEMBERS:
        _TAR_MEMBERS[new] = _TAR_MEMBERS.pop(old)


def archive_offset(entry: Entry) -> int:
    """Where a tar member's data starts (0 for zip members and disk files), to extract in archive order."""
    member = _TAR_MEMBERS.get(entry.archive, {}).get(entry.rel)
    return member.offset_data if member else 0


def read_entry(entry: Entry) -> bytes:
    """The bytes of a disk file or archive member (whose archive list_archive opened)."""
    if entry.disk is not None:
        try:
            return entry.disk.read_bytes()
        except OSError as err:
            raise PrepareError(f"{entry.disk} cannot be read ({err.strerror}): check it is readable")
    archive = _ARCHIVES[entry.archive]
    if isinstance(archive, zipfile.ZipFile):
        return archive.read(entry.rel)
    with archive.extractfile(_TAR_MEMBERS[entry.archive][entry.rel]) as stream:
        return stream.read()


def visible(rel: str) -> bool:
    """False for hidden files and macOS metadata (__MACOSX/, ._NAME), which are no data."""
    return not any(part.startswith(".") or part == "__MACOSX" for part in rel.split("/"))


def list_disk(source: Path, skip: Path | None) -> list[Entry]:
    """Every file below `source` in sorted order, leaving out hidden files and the folder `skip` (--out)."""
    skip = skip.resolve() if skip else None
    entries = []
    for folder, dirs, files in os.walk(source):
        here = Path(folder)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__MACOSX"
                         and (here / d).resolve() != skip)
        entries += [Entry((here / name).relative_to(source).as_posix(), disk=here / name)
                    for name in sorted(files) if not name.startswith(".")]
    return entries


def gather(entries: list[Entry], place: Callable[[str], str | None]) -> dict[str, Entry]:
    """Map entries to their layout paths; an extracted file wins over the same file in an archive."""
    files: dict[str, Entry] = {}
    for entry in entries:
        target = place(entry.rel)
        if target is None:
            continue
        if target in files:
            if files[target].disk is not None and entry.archive is not None:
                continue
            raise PrepareError(f"{target} is found twice, as {files[target].where()} and {entry.where()}: "
                               f"keep only one of them in --source")
        files[target] = entry
    return files


def collect(source: Path, skip: Path | None, archives: tuple[str, ...], place: Callable[[str], str | None],
            complete: Callable[[dict[str, Entry]], bool]) -> dict[str, Entry]:
    """The data set's files in `source`: extracted files first, the known archives only when needed."""
    disk = list_disk(source, skip)
    plain = [entry for entry in disk if entry.name not in archives]
    files = gather(plain, place)
    packed = [entry.disk for entry in disk if entry.name in archives]
    if complete(files) or not packed:
        return files
    members = [Entry(name, archive=path) for path in packed for name in list_archive(path) if visible(name)]
    return gather(plain + members, place)

