"""The files adws makes: private, never through a planted symbolic link, and only its own ever deleted.

- Every directory adws creates is 0700 and every file 0600, whatever the umask: run directories hold prompts
  and agents' output (customer issue text), the audit log and the state store hold task ids and usage.
- A run directory carries a marker file (`MARKER`); pruning (`[run] keep_runs`) deletes only directories
  whose name has the run-directory form *and* which carry the marker, so a `[run] dir` pointed at a folder
  with other data never loses any of it. The markers of one process's runs are hard links to one file (see
  `make_run_dir`): no run pays for a new inode just to be marked.
- The run root is marked as the top of directory hierarchies (ext4's `chattr +T`, see `spread_runs`): ext4 then
  places each run directory (and its files) by the Orlov rule, in the flex group with the fewest directories among
  those with above-average free space, instead of next to the root's own group. Consecutive runs mostly share that
  group, and adws's own pruning frees inodes there; what it buys is distance from other processes' file churn (files
  created and deleted under the same parent, e.g. /tmp), which on ext4 without a journal makes each new inode near
  it cost up to milliseconds of CPU.
- Nothing here is fsynced: run directories are a record of what ran for people and tools to read, and a crash of
  adws loses none of it (only a crash of the machine could), so no run pays a disk flush for them.
- `[run] dir` must not be a symbolic link or belong to another user (a directory another user controls could
  swap a run directory for a link into ours); `check_run_root` says why, and `unsafe_run_root` refuses, at load,
  roots that hold far more than runs: `/`, the home directory and its ancestors.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import stat
import struct
import sys
import time
from collections.abc import Iterable
from pathlib import Path

from adws.errors import AdwsError
from adws.redact import encode_text

__all__ = ["MARKER", "RUN_NAME", "RunPruner", "check_run_root", "create_private", "is_run_dir", "make_private_dir",
           "make_private_dirs", "make_run_dir", "open_private_append", "prune_runs", "replace_private", "spread_runs",
           "unsafe_run_root", "write_private"]

MARKER = ".adws-run"
# What the manager names a run directory: <UTC stamp>-<task>-<6 hex>.
RUN_NAME = re.compile(r"\d{8}T\d{6}-[A-Za-z0-9._-]+-[0-9a-f]{6}")
_MARKER_TEXT = "This directory was made by adws for one run; `[run] keep_runs` may delete it.\n"


def make_private_dir(path: Path) -> None:
    """Create `path` (its parent must exist) as 0700; an existing entry of that name is an error (FileExistsError),
    so a planted directory or link is never used."""
    os.mkdir(path, 0o700)
    # mkdir's mode is masked by the umask, which can only have taken bits away: set exactly 0700 when it did. (One
    # lstat to know: glibc carries out chmod without following links through an O_PATH descriptor and
    # /proc/self/fd, four calls.)
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or stat.S_IMODE(info.st_mode) != 0o700:
        os.chmod(path, 0o700, follow_symlinks=False)


def make_private_dirs(path: str | os.PathLike[str]) -> None:
    """`path` and each of its missing ancestors created 0700 (exactly, whatever the umask), as `mkdir -p`;
    directories already there are left as they are. `Path.mkdir(parents=True, mode=0o700)` gives the mode to the
    last one only: the `.adws` above a first run directory or audit log would be 0755. Raises OSError
    (FileExistsError when something that is not a directory is in the way)."""
    target = Path(path)
    missing: list[Path] = []
    for candidate in (target, *target.parents):
        if candidate.is_dir():
            break
        missing.append(candidate)
    for directory in reversed(missing):
        try:
            make_private_dir(directory)
        except FileExistsError:
            if not directory.is_dir():  # a file or a dangling link in the way; a directory made meanwhile will do
                raise


def write_private(path: Path, text: str) -> None:
    """Write `text` (UTF-8; lone surrogates as their escape bytes) to a new or truncated 0600 file, never through
    a symbolic link. Raises OSError (a full disk: ENOSPC) with the file left behind possibly short."""
    _write_all(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600), text)


def create_private(path: Path, text: str) -> bool:
    """`write_private`, but only when nothing is at `path` yet (not even a symbolic link): False, and nothing
    written, when something is. Raises OSError as write_private does."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        return False
    _write_all(fd, text)
    return True


def _write_all(fd: int, text: str) -> None:
    """Make `fd` 0600 whatever the umask, write all of `text` (encode_text's bytes) to it, and close it."""
    try:
        os.fchmod(fd, 0o600)
        view = memoryview(encode_text(text))
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def replace_private(path: str | os.PathLike[str], chunks: Iterable[str]) -> None:
    """Write `chunks` (text, UTF-8) as the file `path`, whole or not at all: into a new 0600 file beside it, synced,
    then renamed over `path`. A failure (a full disk: ENOSPC, a size limit: EFBIG) raises OSError and leaves `path`
    as it was: the partial file is removed. A symbolic link at `path` is followed (the file it names is replaced);
    a `path` that is there but is no regular file (a FIFO, /dev/stdout) is written to directly, as it cannot be
    replaced."""
    target = os.path.realpath(path)
    try:
        regular = stat.S_ISREG(os.stat(target).st_mode)
    except FileNotFoundError:
        regular = True
    if not regular:
        with open(target, "w", encoding="utf-8") as out:
            out.writelines(chunks)
        return
    import tempfile

    directory, name = os.path.split(target)
    fd, temporary = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory or ".")  # 0600
    try:
        with open(fd, "w", encoding="utf-8") as out:
            out.writelines(chunks)
            out.flush()
            os.fsync(out.fileno())  # the new file's data is on disk before its name replaces the old one
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def open_private_append(path: str | os.PathLike[str], *, readable: bool = False) -> int:
    """A descriptor for appending to the regular file `path` (created 0600, parents 0700); `readable`: open it
    for reading too (`os.pread`, to look at what the file ends with).

    Refuses (OSError with a message that says why) a symbolic link, something that is not a regular file
    (a FIFO would block the writer forever) and a file owned by another user.
    """
    flags = ((os.O_RDWR if readable else os.O_WRONLY) | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
             | os.O_CLOEXEC)
    try:
        try:
            fd = os.open(path, flags, 0o600)
        except FileNotFoundError:  # the directory is missing: made on the first write, not looked for on every one
            make_private_dirs(Path(path).parent)
            fd = os.open(path, flags, 0o600)
    except OSError as exc:
        try:
            mode = os.lstat(path).st_mode
        except OSError:
            raise exc from None
        if stat.S_ISLNK(mode):
            raise OSError(exc.errno, "it is a symbolic link, which adws does not follow") from None
        if not stat.S_ISREG(mode):  # a FIFO without a reader (ENXIO), a socket, a device
            raise OSError(exc.errno, "it is not a regular file") from None
        raise
    info = os.fstat(fd)
    problem = None
    if not stat.S_ISREG(info.st_mode):
        problem = "it is not a regular file"
    elif info.st_uid != os.geteuid():
        problem = f"it is owned by another user (uid {info.st_uid})"
    if problem is not None:
        os.close(fd)
        raise PermissionError(1, problem)
    os.set_blocking(fd, True)
    return fd


def unsafe_run_root(path: str, home: str | None = None) -> str | None:
    """Why `path` must not be `[run] dir` (it holds far more than runs), or None."""
    target = Path(os.path.abspath(os.path.expanduser(path)))
    home_dir = Path(os.path.abspath(home if home is not None else os.path.expanduser("~")))
    if target == Path(target.anchor):
        return "is the filesystem root"
    if target == home_dir:
        return "is the home directory"
    if target in home_dir.parents:
        return f"holds the home directory {home_dir}"
    return None


def check_run_root(root: Path) -> os.stat_result:
    """Raise AdwsError when the existing `root` is a symbolic link, not a directory, or another user's; OSError
    (FileNotFoundError) when it cannot be looked at. Returns what was checked: `root`'s lstat."""
    info = os.lstat(root)
    where = f"[run] dir {root}"
    if stat.S_ISLNK(info.st_mode):
        raise AdwsError(f"{where} is a symbolic link; adws does not follow it: point [run] dir at the real "
                        "directory")
    if not stat.S_ISDIR(info.st_mode):
        raise AdwsError(f"{where} is not a directory")
    if info.st_uid != os.geteuid():
        raise AdwsError(f"{where} is owned by another user (uid {info.st_uid}); use a directory of your own")
    return info


def make_run_dir(root: Path, name: str, like: Path | None = None) -> Path:
    """Create the run directory `root/name` (0700, marked as adws's); `root` is created (0700) if missing.

    `like`: an earlier run directory under `root` (the last one this process made): its marker is linked into the
    new one rather than written again. A hard link makes no new inode, and a new inode is what a file costs on a
    busy ext4 disk: on journaled ext4 a wait for the journal commit under way (0.2-0.6 ms), without a journal a pass
    over the recently deleted inodes near it (0.5-2 ms of CPU on this project's VM, see the note above
    `spread_runs`). The marker stays a regular 0600 file named `MARKER` with the same text; removing a run directory
    removes only its own link. Where the link cannot be made (`like` pruned meanwhile, a file system without hard
    links, the link count limit), the marker is written as a file of its own.

    The first time a process uses `root`, it is marked as the top of directory hierarchies (`spread_runs`). A
    directory whose marker cannot be written is removed again before the error is raised.

    Raises AdwsError for an unsafe root (see `check_run_root`), OSError when the OS refuses.
    """
    try:
        seen = check_run_root(root)
    except FileNotFoundError:
        make_private_dirs(root)
        seen = check_run_root(root)
    key = (seen.st_dev, seen.st_ino)
    if key not in _SPREAD:
        _SPREAD.add(key)  # once per root and process (a lost race only asks twice)
        spread_runs(root, seen)
    path = root / name
    make_private_dir(path)
    marker = path / MARKER
    if like is not None:
        try:
            # link(2) never follows a symbolic link at `like` (nor creates through one at `marker`, in a fresh 0700
            # directory): what it linked is checked, and anything but a regular file is replaced by a real marker,
            # so every run directory adws makes can be pruned.
            os.link(like / MARKER, marker, follow_symlinks=False)
            if stat.S_ISREG(os.lstat(marker).st_mode):
                return path
            os.unlink(marker)
        except OSError:
            pass
    try:
        write_private(marker, _MARKER_TEXT)
    except OSError:
        shutil.rmtree(path, ignore_errors=True)  # an unmarked directory is one pruning would never delete
        raise
    return path


# ext4's inode allocator, on a file system without a journal, passes over every free inode freed in the last 60 s
# (fs/ext4/ialloc.c, recently_deleted: RECENTCY_MIN since Linux 5.7), or the last 360 s while that inode's table
# block is not yet written back (RECENTCY_DIRTY adds 300 s), looking its inode table block up for each: where other
# processes create and delete many files (tests and builds under /tmp), a new file or directory there costs 0.5-2 ms
# of CPU (measured with perf on this project's VM: 65% of a create loop in recently_deleted/find_get_block). Files go
# in their directory's flex group and directories near their parent's, so every run would land among that churn.
# Marked as the top of directory hierarchies (chattr +T, FS_TOPDIR_FL), the run root has each run directory placed
# by the Orlov rule instead: the flex group with the fewest directories among those with above-average free inodes
# and blocks, each run's files with its directory. That group is rarely the churning one; consecutive runs mostly
# share it, and pruning old runs frees inodes in it, so adws's own deletions still count.
_FS_TOPDIR_FL = 0x00020000  # linux/fs.h
# Roots already asked about, by (st_dev, st_ino): a root deleted and made again may reuse its inode number and then
# go unmarked in this process, which costs only placement.
_SPREAD: set[tuple[int, int]] = set()


def spread_runs(root: Path, seen: os.stat_result | None = None) -> bool:
    """Mark the directory `root` as the top of directory hierarchies (ext2/3/4's `chattr +T`, FS_TOPDIR_FL), so
    that each directory made directly in it is placed by the Orlov rule rather than next to `root` (see above);
    True when `root` carries the flag afterwards. The flag stays on `root` (`chattr -T` removes it).

    `seen`: what the caller checked at `root` (`check_run_root`'s lstat); without it `root` is lstat'ed here. The
    flag is set only on that very directory (same device and inode, opened without following a symbolic link) and
    only when the effective user owns it: a root swapped for another directory meanwhile is left alone (False).
    Best effort, never raises: other file systems (tmpfs, XFS, btrfs) refuse or ignore the flag, and nothing else
    changes."""
    request = _flags_requests()
    if request is None:
        return False
    try:
        import fcntl

        if seen is None:
            seen = os.lstat(root)
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            info = os.fstat(fd)
            if (info.st_dev, info.st_ino) != (seen.st_dev, seen.st_ino) or info.st_uid != os.geteuid():
                return False
            flags = _get_flags(fd)
            if flags is None:
                return False
            if not flags & _FS_TOPDIR_FL:
                fcntl.ioctl(fd, request[1], (flags | _FS_TOPDIR_FL).to_bytes(4, sys.byteorder) + bytes(4))
                flags = _get_flags(fd)  # read back: a file system may accept the request and drop the flag
            return flags is not None and bool(flags & _FS_TOPDIR_FL)
        finally:
            os.close(fd)
    except OSError:
        # (flags | _FS_TOPDIR_FL).to_bytes(4) cannot overflow: flags comes from 4 bytes. Nothing but the OS fails.
        return False


def _get_flags(fd: int) -> int | None:
    """The inode flags (FS_IOC_GETFLAGS, the bits `lsattr` shows) of the open file `fd`; None where the platform or
    the file system has none to show (`_flags_requests` is None, or the ioctl fails)."""
    request = _flags_requests()
    if request is None:
        return None
    import fcntl

    buffer = bytearray(8)  # the kernel reads and writes an int, whatever the request's declared size
    try:
        fcntl.ioctl(fd, request[0], buffer, True)
    except OSError:
        return None
    return int.from_bytes(buffer[:4], sys.byteorder)


@functools.cache  # the machine's answer: asked for up to three times per run root
def _flags_requests() -> tuple[int, int] | None:
    """FS_IOC_GETFLAGS and FS_IOC_SETFLAGS (_IOR/_IOW('f', 1/2, long)) where Linux uses the generic ioctl encoding;
    None elsewhere (not Linux, or PowerPC, MIPS, SPARC, which encode them differently)."""
    if not sys.platform.startswith("linux") or os.uname().machine not in _GENERIC_IOCTL:
        return None
    size = struct.calcsize("l")  # sizeof(long), the size the request number declares
    return (2 << 30) | (size << 16) | (0x66 << 8) | 1, (1 << 30) | (size << 16) | (0x66 << 8) | 2


_GENERIC_IOCTL = frozenset({"x86_64", "i386", "i486", "i586", "i686", "aarch64", "armv7l", "armv8l", "riscv64",
                            "s390x", "loongarch64"})


def is_run_dir(entry: os.DirEntry[str]) -> bool:
    """Whether `entry` is a run directory adws made: the name's form, a real directory, the marker inside."""
    if not RUN_NAME.fullmatch(entry.name) or not entry.is_dir(follow_symlinks=False):
        return False
    try:
        return stat.S_ISREG(os.lstat(os.path.join(entry.path, MARKER)).st_mode)
    except OSError:
        return False


def prune_runs(root: Path, keep: int, busy_for: float) -> None:
    """Keep the newest `keep` run directories adws made under `root` (names start with a timestamp, so names
    sort by age); nothing else in `root` is counted or touched.

    A directory changed within the last `busy_for` seconds may belong to a run still going in another
    process, so it is never removed. One look, remembering nothing: a caller that prunes the same root again
    and again keeps a `RunPruner`, whose later calls are cheaper.
    """
    RunPruner(root, keep, busy_for).prune()


class RunPruner:
    """`prune_runs` for one root, called once per run: what one call learns makes the next one cheap.

    - Names found to be run directories are remembered, so a later listing counts them without looking for
      their marker again (an lstat per directory was most of a call's cost at keep_runs = 200); a directory is
      still checked in full right before it is removed, and forgotten once removed.
    - When the oldest run directory (by name) was too recent to remove, nothing can be removed while it stays
      so: every candidate sorts after it, and removal stops at the first recent one. The next calls then look
      at that one directory (one lstat) instead of listing the root, until it is old enough or gone. (A run
      directory named before it that appears meanwhile and is already old, which takes a clock set back or a
      hand-set mtime, waits until then.)

    Threads may share one pruner: what they share is only advice (a stale set costs lstats, never a removal).
    """

    def __init__(self, root: Path, keep: int, busy_for: float) -> None:
        self.root = root
        self.keep = keep
        self.busy_for = busy_for
        self._seen: set[str] = set()
        self._blocker: str | None = None  # the oldest run directory, too recent to remove at the last look

    def prune(self) -> None:
        """Remove the run directories beyond the newest `keep` that are not busy. Never raises for the file
        system: what cannot be listed or removed stays."""
        if self.keep <= 0:
            return
        cutoff = time.time() - self.busy_for
        blocker = self._blocker
        if blocker is not None:
            try:
                info = os.lstat(self.root / blocker)
                if stat.S_ISDIR(info.st_mode) and info.st_mtime >= cutoff:
                    return  # still the first candidate and still busy: a full look would stop right there
            except OSError:
                pass  # gone: look again
            self._blocker = None
        found = self._list()
        if found is None or len(found) <= self.keep:
            return
        found.sort(key=lambda item: item[0])
        for name, entry in found[:-self.keep]:
            try:
                if entry.stat(follow_symlinks=False).st_mtime >= cutoff:
                    self._blocker = name
                    break  # names sort by start time: the ones after this are at least as recent
            except OSError:
                continue
            self._seen.discard(name)  # removed below, or no longer adws's (then checked in full next time)
            if not is_run_dir(entry):
                continue  # perhaps counted from memory, but no longer what adws made: never removed
            # rmtree does not follow symbolic links inside the tree (it works from directory descriptors).
            shutil.rmtree(self.root / name, ignore_errors=True)

    def _list(self) -> list[tuple[str, os.DirEntry[str]]] | None:
        """The run directories under the root, by name; None when the root cannot be listed."""
        seen = self._seen
        found: list[tuple[str, os.DirEntry[str]]] = []
        try:
            with os.scandir(self.root) as entries:
                for entry in entries:
                    # is_dir() comes from the listing itself (d_type): no system call.
                    if (entry.name in seen and entry.is_dir(follow_symlinks=False)) or is_run_dir(entry):
                        found.append((entry.name, entry))
        except OSError:
            return None
        # A new set, not the old one changed: another thread may be reading it. What is gone is forgotten.
        self._seen = {name for name, _ in found}
        return found
