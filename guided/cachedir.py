"""Private cache folders: where guided keeps what it would otherwise rebuild, safe from other users.

Two caches live under `cache_dir()`: converted models (`guided.models`) and compiled IR
(`guided.irstore`).  Whatever guided reads back from them could steer its output (or, for a
format that runs code when loaded, take over the process), so both follow the same rules:

- folders are created 0700 and files 0600 (umask or not);
- a folder or file guided is about to use must be owned by the current user and writable by
  no one else; one that is not is refused with `guided.errors.UnsafeCache` naming the path;
- files are written to a temporary name in their folder, then renamed into place (a reader
  never sees half a file; a crash leaves only a temporary file, removed later);
- symbolic links are not followed where a file is opened.

A cache shared between users is opt-in: with ``GUIDED_CACHE_SHARED=1`` new folders are 0755
and files 0644 (readable by others, still writable by their owner alone), and folders and
files owned by another user are accepted, never ones writable by anyone but their owner.

On systems without POSIX owners (Windows) the owner and mode checks are skipped.

>>> import pathlib, tempfile
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> folder = private_dir(root / "a" / "b", root=root)
>>> oct(folder.stat().st_mode & 0o777)
'0o700'
"""

from __future__ import annotations

import os
import pathlib
import secrets
import stat

from guided.errors import UnsafeCache

SHARED_ENV = "GUIDED_CACHE_SHARED"

_HAS_OWNERS = hasattr(os, "geteuid")
# Temporary files start with this; `remove_stale_temporaries` clears old ones.
TEMPORARY_PREFIX = ".tmp-"


def cache_dir() -> pathlib.Path:
    """Where guided keeps its caches: ``$GUIDED_CACHE``, else ``$XDG_CACHE_HOME/guided``, else
    ``~/.cache/guided``.  Not created here."""
    env = os.environ.get("GUIDED_CACHE")
    if env:
        return pathlib.Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return pathlib.Path(xdg).expanduser() / "guided"
    return pathlib.Path.home() / ".cache" / "guided"


def shared() -> bool:
    """Is the cache shared between users (``GUIDED_CACHE_SHARED=1``)?"""
    return os.environ.get(SHARED_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def dir_mode() -> int:
    return 0o755 if shared() else 0o700


def file_mode() -> int:
    return 0o644 if shared() else 0o600


def check_private(path: pathlib.Path | str, st: os.stat_result | None = None) -> None:
    """Raise `UnsafeCache` unless ``path`` (or its ``st``) is owned by this user (any user, in a
    shared cache) and writable by nobody else."""
    if not _HAS_OWNERS:
        return
    if st is None:
        st = os.stat(path)
    if not shared() and st.st_uid != os.geteuid():
        raise UnsafeCache(f"refusing the cache path {path}: it belongs to user id {st.st_uid}, not to this user "
                          f"({os.geteuid()}); point GUIDED_CACHE to a folder of your own, or set "
                          f"{SHARED_ENV}=1 to read a cache shared by another user")
    if st.st_mode & 0o022:
        raise UnsafeCache(f"refusing the cache path {path}: it is writable by other users "
                          f"(mode {stat.filemode(st.st_mode)}); run `chmod go-w {path}` if you trust its content")


def private_dir(path: pathlib.Path, root: pathlib.Path | None = None) -> pathlib.Path:
    """The folder ``path``, created where missing (0700, or 0755 in a shared cache) and checked
    with `check_private` from ``root`` (default: `cache_dir()`) down to it.

    Components above ``root`` are neither created nor checked: they are the user's choice.
    """
    root = cache_dir() if root is None else root
    path = pathlib.Path(path)
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        raise ValueError(f"{path} is not inside the cache folder {root}") from None
    current = root
    for part in ("",) + parts:
        current = current / part if part else current
        try:
            os.mkdir(current, dir_mode())
            os.chmod(current, dir_mode())  # mkdir's mode goes through the umask
        except FileExistsError:
            pass
        except FileNotFoundError:
            current.mkdir(parents=True, exist_ok=True)  # above root: the user's folders, umask as usual
            os.chmod(current, dir_mode())
        st = os.stat(current)
        if not stat.S_ISDIR(st.st_mode):
            raise UnsafeCache(f"refusing the cache path {current}: not a folder")
        check_private(current, st)
    return path


def check_tree(folder: pathlib.Path) -> None:
    """`check_private` on ``folder`` and everything in it (only regular files and folders: no
    symbolic links, FIFOs or devices)."""
    check_private(folder)
    for entry in os.scandir(folder):
        st = entry.stat(follow_symlinks=False)
        if stat.S_ISLNK(st.st_mode):
            raise UnsafeCache(f"refusing the cache path {entry.path}: a symbolic link")
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
            raise UnsafeCache(f"refusing the cache path {entry.path}: neither a file nor a folder")
        check_private(entry.path, st)
        if stat.S_ISDIR(st.st_mode):
            check_tree(pathlib.Path(entry.path))


def temporary_name(stem: str = "") -> str:
    """A fresh name for a file or folder being written: hidden, unique, recognisable as stale later."""
    return f"{TEMPORARY_PREFIX}{stem}{'-' if stem else ''}{os.getpid()}-{secrets.token_hex(6)}"


def restrict(folder: pathlib.Path) -> None:
    """Give ``folder`` and everything below it the cache's modes (files written by other code,
    e.g. ``save_pretrained``, follow the umask)."""
    os.chmod(folder, dir_mode())
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames:
            os.chmod(os.path.join(dirpath, name), dir_mode())
        for name in filenames:
            os.chmod(os.path.join(dirpath, name), file_mode())
