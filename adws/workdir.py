"""What a failed attempt leaves behind in the working tree: `[run] workdir = "keep" | "reset" | "worktree"`.

A *workspace* is opened once per run, before the first attempt, and asked for each attempt's directory:

- `keep` (the default): every attempt runs in the given directory and finds whatever the previous one left.
  Works in any directory, git or not.
- `reset`: every attempt runs in the given git working tree. After a failed attempt its changes (commits it
  made, edits, new files) are saved as `changes.patch` in the attempt's directory and the tree is restored to
  the commit and branch it was on before the first attempt. Uncommitted changes at the start are refused
  (`WorkdirError`), never destroyed: `git clean` would otherwise delete the coordinator's own files.
- `worktree`: every attempt runs in its own `git worktree` on a new branch made from the starting commit
  (under `<git dir>/adws/worktrees/`). A failed attempt's changes are saved as a patch and its worktree and
  branch are removed; the successful one is kept and named in the result (`Handoff`).

An attempt stopped by a signal or a cancellation is a failed one here: its changes are saved and the tree
restored (or its worktree removed) the same way, within a bound of time the manager gives (`within`).

Patches are `git diff --binary` against the starting commit, made with a private index file so the user's
index is never touched: `git apply --binary changes.patch` (or `git am`-free review) brings them back.
Pattern from worktree-per-task coordinators (one branch per agent attempt) and from `git stash`'s own
use of a temporary index.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol

from adws.dataclass_cache import dataclass
from adws.errors import WorkdirError

__all__ = ["POLICIES", "Git", "Handoff", "WorkdirError", "Workspace", "open_workspace", "save_patch"]

PATCH_NAME = "changes.patch"
# git is quick for everything we ask of it; a hung git (a lock, a network filesystem) must still end.
GIT_TIMEOUT_SECONDS = 120.0


@dataclass(frozen=True, slots=True)
class Handoff:
    """Where the work of an attempt is: its directory, and for `worktree` the worktree and branch holding it."""

    workdir: str
    worktree: str | None = None
    branch: str | None = None
    base_commit: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        return {"workdir": self.workdir, "worktree": self.worktree, "branch": self.branch,
                "base_commit": self.base_commit}


class Workspace(Protocol):
    """One run's handling of its working tree. All paths are absolute."""

    policy: str

    def begin(self, label: str) -> Path:
        """The directory the attempt labelled `label` (unique within the run) runs in."""
        ...

    def failed(self, cwd: Path, attempt_dir: Path, *, within: float | None = None) -> str | None:
        """After a failed (or stopped) attempt that ran in `cwd`: keep its changes, tidy up. The patch's path, if
        any. `within`: seconds the whole of it may take (a stopped run is waiting), else each git command's own
        bound. Raises WorkdirError when git fails or runs out of time."""
        ...

    def succeeded(self, cwd: Path) -> Handoff:
        """After the successful attempt that ran in `cwd`: where its work is."""
        ...


# -- git ----------------------------------------------------------------------------------------------------

# Variables that would point git at another repository or index than the one we name.
_GIT_LOCATION_VARIABLES = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_COMMON_DIR", "GIT_PREFIX")


class Git:
    """Runs git in one directory with an explicit environment; any failure is a WorkdirError naming the command."""

    def __init__(self, cwd: Path, environ: Mapping[str, str] | None = None) -> None:
        self.cwd = cwd
        base = dict(os.environ if environ is None else environ)
        for name in _GIT_LOCATION_VARIABLES:
            base.pop(name, None)
        # Never wait for a password or an editor: there is nobody to answer.
        base.update({"GIT_TERMINAL_PROMPT": "0", "GIT_EDITOR": "true", "LC_ALL": "C"})
        self.env = base
        self.deadline: float | None = None  # time.monotonic() by which every command must have ended

    def within(self, seconds: float | None) -> Git:
        """This git, with every command ending within `seconds` from now, all together (None: no shared bound)."""
        other = self.at(self.cwd)
        other.deadline = None if seconds is None else time.monotonic() + seconds
        return other

    def __call__(self, *args: str, env: Mapping[str, str] | None = None, check: bool = True) -> str:
        argv = ["git", *args]
        timeout = GIT_TIMEOUT_SECONDS
        if self.deadline is not None:
            timeout = min(timeout, self.deadline - time.monotonic())
            if timeout <= 0:
                raise WorkdirError(f"`{' '.join(argv)}` in {self.cwd}: no time left to run it")
        try:
            done = subprocess.run(argv, cwd=self.cwd, env={**self.env, **(env or {})}, capture_output=True,
                                  timeout=timeout, check=False)
        except FileNotFoundError:
            raise WorkdirError("git is not installed, but the workdir policy needs it") from None
        except subprocess.TimeoutExpired:
            raise WorkdirError(f"`{' '.join(argv)}` in {self.cwd} took over {timeout:.0f} s") from None
        except OSError as exc:
            raise WorkdirError(f"cannot run git in {self.cwd}: {exc.strerror or exc}") from None
        if check and done.returncode != 0:
            detail = done.stderr.decode("utf-8", "replace").strip().splitlines()
            raise WorkdirError(f"`{' '.join(argv)}` failed in {self.cwd}: {detail[-1] if detail else done.returncode}")
        return done.stdout.decode("utf-8", "surrogateescape")

    def at(self, cwd: Path) -> Git:
        other = Git.__new__(Git)
        other.cwd, other.env, other.deadline = cwd, self.env, self.deadline
        return other


def _repository(workdir: Path, policy: str, environ: Mapping[str, str] | None) -> tuple[Git, str, str | None]:
    """(git in the tree's top level, the starting commit, the branch or None when detached). Refuses a dirty tree."""
    git = Git(workdir, environ)
    inside = git("rev-parse", "--is-inside-work-tree", check=False).strip()
    if inside != "true":
        raise WorkdirError(f'[run] workdir = "{policy}" needs a git working tree, and {workdir} is not one')
    top = Path(git("rev-parse", "--show-toplevel").strip())
    git = git.at(top)
    head = git("rev-parse", "--verify", "--quiet", "HEAD^{commit}", check=False).strip()
    if not head:
        raise WorkdirError(f'[run] workdir = "{policy}": {top} has no commit yet; commit something first')
    dirty = git("status", "--porcelain", "--untracked-files=all").splitlines()
    if dirty:
        shown = ", ".join(line[3:] for line in dirty[:5]) + (f" and {len(dirty) - 5} more" if len(dirty) > 5 else "")
        raise WorkdirError(f'[run] workdir = "{policy}": {top} has uncommitted changes ({shown}); commit or stash '
                           "them first (adws would have to discard them to restore the tree after a failure)")
    branch = git("symbolic-ref", "--quiet", "--short", "HEAD", check=False).strip() or None
    return git, head, branch


def save_patch(git: Git, base: str, target: Path) -> str | None:
    """Everything in git's working tree that differs from `base` (commits, edits, new files), as a binary patch.

    Built in a private copy of the index, so the user's staging area is untouched. None when nothing changed.
    """
    index = Path(git("rev-parse", "--path-format=absolute", "--git-path", "index").strip())
    with tempfile.TemporaryDirectory(prefix="adws-index-") as scratch:
        private = Path(scratch) / "index"
        if index.exists():
            shutil.copyfile(index, private)  # a warm index: git re-hashes only what changed
        env = {"GIT_INDEX_FILE": str(private)}
        git("add", "--all", "--", ".", env=env)
        patch = git("diff", "--cached", "--binary", "--no-color", "--no-ext-diff", base, env=env)
    if not patch:
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(patch, encoding="utf-8", errors="surrogateescape")
    return str(target)


# -- policies -----------------------------------------------------------------------------------------------


class KeepWorkspace:
    """Every attempt in the given directory; nothing saved, nothing restored."""

    policy = "keep"

    def __init__(self, workdir: Path, environ: Mapping[str, str] | None = None, *, run_name: str = "run") -> None:
        self.workdir = workdir

    def begin(self, label: str) -> Path:
        return self.workdir

    def failed(self, cwd: Path, attempt_dir: Path, *, within: float | None = None) -> str | None:
        return None

    def succeeded(self, cwd: Path) -> Handoff:
        return Handoff(str(cwd))


class ResetWorkspace:
    """Every attempt in the given git tree; after a failure, patch saved and tree restored to the start."""

    policy = "reset"

    def __init__(self, workdir: Path, environ: Mapping[str, str] | None = None, *, run_name: str = "run") -> None:
        self.git, self.base, self.branch = _repository(workdir, self.policy, environ)
        self.workdir = workdir

    def begin(self, label: str) -> Path:
        return self.workdir

    def failed(self, cwd: Path, attempt_dir: Path, *, within: float | None = None) -> str | None:
        git = self.git.within(within)
        patch = save_patch(git, self.base, attempt_dir / PATCH_NAME)
        # Back to the starting branch (the agent may have switched or committed), at the starting commit,
        # without the files it created. Ignored files (build output) stay: `git clean` without -x spares them.
        if self.branch is not None:
            git("checkout", "--force", "--quiet", self.branch)
        else:
            git("checkout", "--force", "--quiet", "--detach", self.base)
        git("reset", "--hard", "--quiet", self.base)
        git("clean", "-d", "--force", "--quiet")
        return patch

    def succeeded(self, cwd: Path) -> Handoff:
        return Handoff(str(cwd), base_commit=self.base)


class WorktreeWorkspace:
    """Every attempt in its own `git worktree` on a new branch from the starting commit."""

    policy = "worktree"

    def __init__(self, workdir: Path, environ: Mapping[str, str] | None = None, *, run_name: str = "run") -> None:
        self.git, self.base, _ = _repository(workdir, self.policy, environ)
        # A workdir below the top level runs at the same place inside each worktree.
        self.relative = workdir.relative_to(self.git.cwd)
        common = Path(self.git("rev-parse", "--path-format=absolute", "--git-common-dir").strip())
        self.root = common / "adws" / "worktrees"
        self.run_name = _ref_safe(run_name)
        self._made: dict[Path, tuple[Path, str]] = {}  # attempt cwd -> (its worktree, its branch)

    def begin(self, label: str) -> Path:
        name = f"{self.run_name}-{_ref_safe(label)}"
        tree, branch = self.root / name, f"adws/{name}"
        self.root.mkdir(parents=True, exist_ok=True)
        self.git("worktree", "add", "--quiet", "-b", branch, str(tree), self.base)
        cwd = tree / self.relative
        cwd.mkdir(parents=True, exist_ok=True)  # the subdirectory may hold only untracked files at the start
        self._made[cwd] = (tree, branch)
        return cwd

    def failed(self, cwd: Path, attempt_dir: Path, *, within: float | None = None) -> str | None:
        tree, branch = self._made.pop(cwd)
        git = self.git.within(within)
        patch = save_patch(git.at(tree), self.base, attempt_dir / PATCH_NAME)
        git("worktree", "remove", "--force", "--force", str(tree))  # twice: also a locked worktree
        git("branch", "--quiet", "-D", branch)
        return patch

    def succeeded(self, cwd: Path) -> Handoff:
        tree, branch = self._made[cwd]
        return Handoff(str(cwd), worktree=str(tree), branch=branch, base_commit=self.base)


def _ref_safe(text: str) -> str:
    """A name git accepts in a branch and a directory: letters, digits, `.`, `_`, `-` (no `..`, no leading `-`)."""
    cleaned = "".join(c if c.isalnum() or c in "._-" else "_" for c in text).replace("..", "_").strip(".-")
    return cleaned[:80] or "_"


WorkspaceFactory = Callable[..., Workspace]

# The policy names config validation accepts are this registry's keys.
POLICIES: dict[str, WorkspaceFactory] = {
    "keep": KeepWorkspace,
    "reset": ResetWorkspace,
    "worktree": WorktreeWorkspace,
}


def open_workspace(policy: str, workdir: str | os.PathLike[str], *, run_name: str = "run",
                   environ: Mapping[str, str] | None = None) -> Workspace:
    """The workspace for `policy` over `workdir`. Raises WorkdirError (not git, dirty tree) or KeyError (policy)."""
    return POLICIES[policy](Path(workdir).resolve(), environ, run_name=run_name)
