"""Atomic file writes, shared by captions, configs, checkpoints and LoRA files.

An artist's captions and hours of GPU time must never end up as half a file because the
app crashed, the disk filled up or the power went: everything we write goes to a temporary
file in the same folder (so the rename stays on one file system), is flushed to disk, and
then atomically replaces the target. A failed write leaves the old file untouched.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike[str]) -> Iterator[tuple[IO[bytes], Path]]:
    """Yield ``(file, temp_path)``; on a clean exit the temp file replaces ``path``.

    The temp path is given too, for writers (like ``safetensors.torch.save_file``) that
    want a file name rather than a file object: they may write to it directly.
    """
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh, tmp
            fh.flush()
            os.fsync(fh.fileno())
        # mkstemp creates 0600 files; give the result the usual permissions.
        with contextlib.suppress(OSError):
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_writer(path) as (fh, _tmp):
        fh.write(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
