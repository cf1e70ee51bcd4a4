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
import threading
from pathlib import Path
from typing import IO, Iterator


_writes = threading.Condition()
_active_writes = 0


@contextlib.contextmanager
def writing() -> Iterator[None]:
    """Mark a save in progress (every :func:`atomic_writer` does; checkpoints wrap theirs).

    A process that must end abruptly (a multi-process run whose other rank failed, a
    worker whose app is gone) calls :func:`wait_for_writes` first, so a save that is
    almost done — a checkpoint, the LoRA — completes rather than being thrown away.
    """
    global _active_writes
    with _writes:
        _active_writes += 1
    try:
        yield
    finally:
        with _writes:
            _active_writes -= 1
            _writes.notify_all()


def wait_for_writes(timeout: float) -> bool:
    """Block until no save is in progress (True) or ``timeout`` seconds pass (False)."""
    with _writes:
        return _writes.wait_for(lambda: _active_writes == 0, timeout)


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike[str], clean_stale: bool = False) -> Iterator[tuple[IO[bytes], Path]]:
    """Yield ``(file, temp_path)``; on a clean exit the temp file replaces ``path``.

    The temp path is given too, for writers (like ``safetensors.torch.save_file``) that
    want a file name rather than a file object: they may write to it directly.

    The temp file is ``.NAME.<pid>.<random>.tmp``. A process killed mid-write leaves it
    behind (the target is untouched); ``clean_stale`` removes such leftovers of processes
    that no longer run first (worth it for big files such as LoRAs).
    """
    with writing(), _atomic_writer(path, clean_stale) as pair:
        yield pair


@contextlib.contextmanager
def _atomic_writer(path: str | os.PathLike[str], clean_stale: bool) -> Iterator[tuple[IO[bytes], Path]]:
    path = Path(path)
    if clean_stale:
        remove_stale_temps(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
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


def remove_stale_temps(path: str | os.PathLike[str]) -> list[Path]:
    """Delete temp files :func:`atomic_writer` left beside ``path`` in processes that died.

    Only files whose writer process is known to be gone are removed (POSIX); a write in
    progress in another live process is never touched. Returns what was removed.
    """
    path = Path(path)
    removed: list[Path] = []
    if os.name != "posix":
        return removed
    prefix = f".{path.name}."
    try:
        candidates = [p for p in path.parent.iterdir() if p.name.startswith(prefix) and p.name.endswith(".tmp")]
    except OSError:
        return removed
    for tmp in candidates:
        pid_text = tmp.name[len(prefix):].split(".", 1)[0]
        if not pid_text.isdigit() or int(pid_text) == os.getpid() or _alive(int(pid_text)):
            continue
        with contextlib.suppress(OSError):
            tmp.unlink()
            removed.append(tmp)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # POSIX only: signal 0 checks existence (on Windows it would send Ctrl+C)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: alive, someone else's
        return True
    return True


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: Read once at import: os.umask can only be read by setting it, and doing that at every
#: write would, for an instant, give files created by other threads the wrong permissions.
_UMASK = _read_umask()


def _umask() -> int:
    return _UMASK
