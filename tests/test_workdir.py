"""Workdir policies against real git repositories made here (keep, reset, worktree)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from adws.workdir import POLICIES, Git, Handoff, WorkdirError, open_workspace, save_patch
from tests.gitrepo import git, make_repo

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")



@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {"app.py": "print('v1')\n", ".gitignore": "build/\n", "pkg/mod.py": "X = 1\n"})


def agent_edits(cwd: Path, *, commit: bool = False) -> None:
    """What a half-finished agent leaves: an edit, a new file, a deleted file, maybe a commit."""
    (cwd / "app.py").write_text("print('half-done')\n", encoding="utf-8")
    (cwd / "new_module.py").write_text("NEW = True\n", encoding="utf-8")
    (cwd / "pkg" / "mod.py").unlink()
    if commit:
        git(cwd, "add", "-A")
        git(cwd, "commit", "--quiet", "-m", "agent work")


def test_registry_names_the_three_policies() -> None:
    assert sorted(POLICIES) == ["keep", "reset", "worktree"]


def test_keep_runs_every_attempt_in_place_and_touches_nothing(tmp_path: Path) -> None:
    plain = tmp_path / "plain"  # not a git tree: keep needs none
    plain.mkdir()
    space = open_workspace("keep", plain)
    cwd = space.begin("01")
    (cwd / "left.txt").write_text("half", encoding="utf-8")
    assert space.failed(cwd, tmp_path / "attempt") is None
    assert space.begin("02") == plain.resolve()
    assert (plain / "left.txt").read_text(encoding="utf-8") == "half"
    assert space.succeeded(cwd) == Handoff(str(plain.resolve()))


@pytest.mark.parametrize("commit", [False, True], ids=["edits", "commits"])
def test_reset_saves_the_patch_and_restores_the_starting_tree(repo: Path, tmp_path: Path, commit: bool) -> None:
    start = git(repo, "rev-parse", "HEAD").strip()
    (repo / "build").mkdir()
    (repo / "build" / "cache.bin").write_text("ignored output", encoding="utf-8")
    space = open_workspace("reset", repo)
    cwd = space.begin("01-1-claude-default")
    assert cwd == repo.resolve()
    agent_edits(cwd, commit=commit)
    attempt = tmp_path / "run" / "01"
    patch = space.failed(cwd, attempt)

    assert patch == str(attempt / "changes.patch")
    # Restored: same commit, same branch, clean, nothing new; ignored files are the user's and stay.
    assert git(repo, "rev-parse", "HEAD").strip() == start
    assert git(repo, "symbolic-ref", "--short", "HEAD").strip() == "main"
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == ""
    assert (repo / "app.py").read_text(encoding="utf-8") == "print('v1')\n"
    assert (repo / "pkg" / "mod.py").exists() and not (repo / "new_module.py").exists()
    assert (repo / "build" / "cache.bin").exists()
    # The patch brings the failed attempt's work back exactly.
    git(repo, "apply", "--binary", patch)
    assert (repo / "app.py").read_text(encoding="utf-8") == "print('half-done')\n"
    assert (repo / "new_module.py").read_text(encoding="utf-8") == "NEW = True\n"
    assert not (repo / "pkg" / "mod.py").exists()


def test_reset_after_an_attempt_that_changed_nothing_saves_no_patch(repo: Path, tmp_path: Path) -> None:
    space = open_workspace("reset", repo)
    cwd = space.begin("01")
    assert space.failed(cwd, tmp_path / "attempt") is None
    assert not (tmp_path / "attempt").exists()
    assert space.succeeded(cwd).base_commit == git(repo, "rev-parse", "HEAD").strip()


def test_reset_goes_back_to_the_starting_branch_when_the_agent_switched(repo: Path, tmp_path: Path) -> None:
    space = open_workspace("reset", repo)
    cwd = space.begin("01")
    git(cwd, "checkout", "--quiet", "-b", "agent-branch")
    agent_edits(cwd, commit=True)
    space.failed(cwd, tmp_path / "attempt")
    assert git(repo, "symbolic-ref", "--short", "HEAD").strip() == "main"
    assert (repo / "app.py").read_text(encoding="utf-8") == "print('v1')\n"


def test_making_a_patch_leaves_the_staging_area_as_it_was(repo: Path, tmp_path: Path) -> None:
    agent_edits(repo)
    git(repo, "add", "app.py")  # the agent staged one file and left the rest
    staged = git(repo, "diff", "--cached", "--name-only")
    patch = save_patch(Git(repo), git(repo, "rev-parse", "HEAD").strip(), tmp_path / "changes.patch")
    assert patch is not None and "new_module.py" in Path(patch).read_text(encoding="utf-8")
    assert git(repo, "diff", "--cached", "--name-only") == staged == "app.py\n"


@pytest.mark.parametrize("policy", ["reset", "worktree"])
def test_uncommitted_changes_at_the_start_are_refused_not_destroyed(repo: Path, policy: str) -> None:
    (repo / "app.py").write_text("mine, not committed\n", encoding="utf-8")
    (repo / "notes.txt").write_text("untracked\n", encoding="utf-8")
    with pytest.raises(WorkdirError) as caught:
        open_workspace(policy, repo)
    assert str(caught.value) == (
        f'[run] workdir = "{policy}": {repo.resolve()} has uncommitted changes (app.py, notes.txt); commit or '
        "stash them first (adws would have to discard them to restore the tree after a failure)")
    assert (repo / "app.py").read_text(encoding="utf-8") == "mine, not committed\n"
    assert (repo / "notes.txt").exists()


@pytest.mark.parametrize("policy", ["reset", "worktree"])
def test_a_directory_that_is_not_a_git_tree_is_refused(tmp_path: Path, policy: str) -> None:
    with pytest.raises(WorkdirError) as caught:
        open_workspace(policy, tmp_path)
    assert str(caught.value) == (f'[run] workdir = "{policy}" needs a git working tree, and {tmp_path.resolve()} '
                                 "is not one")


def test_a_repository_without_commits_is_refused(tmp_path: Path) -> None:
    git(tmp_path, "init", "--quiet")
    with pytest.raises(WorkdirError, match="has no commit yet; commit something first"):
        open_workspace("reset", tmp_path)


def test_worktree_gives_each_attempt_its_own_tree_and_names_the_successful_one(repo: Path, tmp_path: Path) -> None:
    start = git(repo, "rev-parse", "HEAD").strip()
    space = open_workspace("worktree", repo, run_name="20261118T130000-#42-abc")
    first = space.begin("01-1-claude-a")
    assert first != repo.resolve() and (first / "app.py").read_text(encoding="utf-8") == "print('v1')\n"
    agent_edits(first, commit=True)
    attempt = tmp_path / "run" / "01"
    patch = space.failed(first, attempt)
    assert patch == str(attempt / "changes.patch") and "new_module.py" in Path(patch).read_text(encoding="utf-8")
    assert not first.exists()  # the failed worktree and its branch are gone; the patch keeps the work
    assert "adws/" not in git(repo, "branch", "--list")

    second = space.begin("02-2-copilot-default")
    assert (second / "app.py").read_text(encoding="utf-8") == "print('v1')\n"  # from the start, not the failure
    (second / "app.py").write_text("print('fixed')\n", encoding="utf-8")
    handoff = space.succeeded(second)
    assert handoff.worktree == str(second) and handoff.base_commit == start
    assert handoff.branch == "adws/20261118T130000-_42-abc-02-2-copilot-default"
    assert git(second, "symbolic-ref", "--short", "HEAD").strip() == handoff.branch
    # The user's own tree never changed.
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == ""
    assert git(repo, "rev-parse", "HEAD").strip() == start
    assert (repo / "app.py").read_text(encoding="utf-8") == "print('v1')\n"


def test_worktree_keeps_a_subdirectory_workdir_relative(repo: Path, tmp_path: Path) -> None:
    space = open_workspace("worktree", repo / "pkg")
    cwd = space.begin("01")
    assert cwd.name == "pkg" and (cwd / "mod.py").exists()
    handoff = space.succeeded(cwd)
    assert handoff.worktree == str(cwd.parent)
