"""Durable file writes shared by the replay, the checkpoints and the runner:
a reader sees the old file or the new one, never a half-written one."""

import os
import uuid


def atomic_write(path, write):
    """Calls `write(binary_file)` on a temporary file beside `path`, fsyncs
    it, renames it over `path` and fsyncs the directory (so the rename
    survives a crash too); on any error the temporary file is removed and
    `path` is left as it was. Every atomic write of the project goes
    through here."""
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_directory(os.path.dirname(os.path.abspath(path)))
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_text(path, text):
    """`atomic_write` of a UTF-8 text."""
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def fsync_directory(directory):
    """Makes renames inside `directory` durable where the platform allows
    it (a no-op where directories cannot be opened or fsynced)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        return
    finally:
        os.close(fd)
