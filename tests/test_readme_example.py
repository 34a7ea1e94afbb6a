"""The README's first Python block (the coordinator's tour of the API) runs as written, from a clone with the fake
agents first on PATH, as the README says: a README example that no longer runs is a defect a new user meets first."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.helpers import FAKES_BIN, TESTS

REPO = TESTS.parent


def test_the_readmes_python_tour_runs_as_written(tmp_path: Path) -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.search(r"^### From Python \(the coordinator\)\n\n```python\n(.*?)^```$", readme, re.M | re.S)
    assert block is not None, "the README's Python tour is gone or moved"
    (tmp_path / "tour.py").write_text(block.group(1), encoding="utf-8")
    shutil.copy(REPO / "config.toml", tmp_path / "config.toml")
    env = {**os.environ, "PATH": f"{FAKES_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("ADWS_CONFIG", None)
    done = subprocess.run([sys.executable, "tour.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "task_finished" in done.stdout and "outcome='success'" in done.stdout  # run_many's events were printed
