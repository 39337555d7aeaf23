"""Removing what a kernel left behind, whatever it made.

``shutil.rmtree`` (and ``os.walk``) recurse once per folder level, so a notebook that nests
a few thousand folders makes them raise RecursionError; paths that deep also pass PATH_MAX.
:func:`remove_tree` works with folder descriptors and a bounded stack of them: at
``MAX_OPEN`` levels it moves the deeper folder up to the top (a rename, constant cost), so
any depth is removed with at most ``MAX_OPEN`` descriptors open. It never follows a link and
never raises: clean-up must not cost a batch its reports.

A folder that is a mount point (the process backend's size-limited tmpfs, left mounted by a
worker killed mid-job) is detached first, then removed; one that cannot be detached is left
alone: nothing on another file system is ever deleted through the tree.
"""
from __future__ import annotations

import ctypes
import errno
import os
import secrets
from pathlib import Path

MAX_OPEN = 64
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
MNT_DETACH, UMOUNT_NOFOLLOW = 2, 8
_libc = ctypes.CDLL(None, use_errno=True)


def unmount(path: str | os.PathLike) -> int:
    """Detach the file system mounted at ``path`` (lazily: it goes when no longer busy).
    Returns 0, or the errno (EINVAL: not a mount point; EPERM: not ours to unmount)."""
    if _libc.umount2(os.fsencode(path), MNT_DETACH | UMOUNT_NOFOLLOW) == 0:
        return 0
    return ctypes.get_errno()


def _detached(parent_fd: int, name: str, parent_dev: int) -> bool:
    """May the walk enter ``name``? Yes on the parent's file system, or once the mount
    there is detached; no when a mount stays (it is not ours to empty)."""
    try:
        if os.stat(name, dir_fd=parent_fd, follow_symlinks=False).st_dev == parent_dev:
            return True
    except OSError:
        return False
    # on another device: a mount point, or a btrfs subvolume (EINVAL: not a mount)
    return unmount(f"/proc/self/fd/{parent_fd}/{name}") in (0, errno.EINVAL)


def remove_tree(path: str | os.PathLike) -> bool:
    """Remove ``path`` and everything under it; True when it is gone."""
    path = Path(path)
    if os.path.ismount(path):
        unmount(path)
    try:
        top = os.open(path, _DIR)
    except FileNotFoundError:
        return True
    except OSError:  # a file or a link: remove the entry itself
        try:
            os.unlink(path)
        except OSError:
            pass
        return not os.path.lexists(path)
    stack: list[tuple[int, str, int]] = [(top, "", os.fstat(top).st_ino)]  # (fd, name in parent, inode)
    stuck: set[int] = set()   # folders that could not be emptied or removed: not tried again
    try:
        while stack:
            fd, _, _ = stack[-1]
            child = None
            with os.scandir(fd) as entries:
                for entry in entries:
                    try:
                        is_dir = entry.is_dir(follow_symlinks=False)
                        inode = entry.inode()
                    except OSError:
                        continue
                    if not is_dir:
                        try:
                            os.unlink(entry.name, dir_fd=fd)
                        except OSError:
                            pass
                    elif inode not in stuck:
                        child = (entry.name, inode)
                        break
            if child is not None:
                name, inode = child
                if not _detached(fd, name, os.fstat(fd).st_dev):
                    stuck.add(inode)
                    continue
                if len(stack) >= MAX_OPEN:  # too deep: move it to the top, empty it from there
                    try:
                        os.rename(name, f".gk-deep-{secrets.token_hex(8)}", src_dir_fd=fd, dst_dir_fd=top)
                    except OSError:
                        stuck.add(inode)
                    continue
                try:
                    stack.append((os.open(name, _DIR, dir_fd=fd), name, inode))
                except OSError:
                    stuck.add(inode)
                continue
            fd, name, inode = stack.pop()
            os.close(fd)
            if stack:
                try:
                    os.rmdir(name, dir_fd=stack[-1][0])
                except OSError:
                    stuck.add(inode)
    except OSError:
        pass
    finally:
        for fd, _, _ in stack:
            os.close(fd)
    try:
        os.rmdir(path)
    except OSError:
        pass
    return not os.path.lexists(path)
