"""What a run trained and was tested on: each split's files, fingerprinted cheaply, so that a resume or a
comparison on other data is noticed.

Per split: the number of (image, label) pairs, a SHA-1 of their names (relative to the data set's root, so that
moving the data changes nothing) and a SHA-1 of their content as sampled: each file's size and its first and last
SAMPLE bytes (the whole of a smaller file). That notices a file added, removed or renamed, any change of a file's
size, and any change in its first or last SAMPLE bytes: a PNG ends with the checksum of all its pixels (the zlib
Adler-32 of its last IDAT chunk), so every changed pixel of a PNG image or label. It does not notice a change of
the same size in the middle of a larger file of another format (a JPEG or .npy edited in place), nor a change of
modification time alone (a copy of the same data is the same data).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

SAMPLE = 16 * 1024  # bytes read at each end of a file


def file_sample(path: Path) -> bytes:
    """The size and the first and last SAMPLE bytes of `path` (all of it when it is at most 2 x SAMPLE)."""
    with open(path, "rb") as file:
        size = file.seek(0, 2)
        file.seek(0)
        if size <= 2 * SAMPLE:
            return b"%d:" % size + file.read()
        head = file.read(SAMPLE)
        file.seek(size - SAMPLE)
        return b"%d:" % size + head + file.read(SAMPLE)


def split_record(dataset) -> dict:
    """A split's file count and fingerprints: {"files", "names_sha1", "content_sha1"}."""
    def name(path):
        path = Path(path)
        return (path.relative_to(dataset.root) if path.is_relative_to(dataset.root) else path.name).as_posix()

    names = "\n".join(f"{name(image)}\t{name(label)}" for image, label in dataset.pairs)
    content = hashlib.sha1()
    for pair in dataset.pairs:
        for path in pair:
            content.update(hashlib.sha1(file_sample(path)).digest())
    return {"files": len(dataset.pairs), "names_sha1": hashlib.sha1(names.encode()).hexdigest(),
            "content_sha1": content.hexdigest()}


def data_changes(recorded: dict, current: dict) -> list[str]:
    """What differs between two records of splits ({split: split_record}), in words; [] if nothing. A split that
    one of them lacks, and a fingerprint a record of an older version lacks, are not compared."""
    changes = []
    for split, now in current.items():
        then = recorded.get(split)
        if not then:
            continue
        if then["files"] != now["files"]:
            changes.append(f"the {split} split has {now['files']} files, the run was trained with {then['files']}")
        elif then["names_sha1"] != now["names_sha1"]:
            changes.append(f"the {split} split's {now['files']} file names differ from those the run was trained on")
        elif then.get("content_sha1", now["content_sha1"]) != now["content_sha1"]:
            changes.append(f"the content of the {split} split's files differs from what the run was trained on "
                           f"(same names, a file rewritten)")
    return changes
