"""The real chat TUI in a real terminal: tests/tui_tmux.sh drives `nightcap chat` in tmux at 80x24
with the embedded default model, types a message and checks that a reply appears."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("tui_tmux.sh")


@pytest.mark.slow
def test_real_app_replies_in_tmux(tmp_path: Path, nightcap_home: Path) -> None:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (apt-get install tmux)")
    env = {**os.environ, "NIGHTCAP_HOME": str(nightcap_home), "PYTHON": sys.executable, "TMPDIR": str(tmp_path)}
    done = subprocess.run(
        ["bash", str(SCRIPT), str(tmp_path / "pane.txt")], env=env, capture_output=True, text=True, timeout=900
    )
    if done.returncode == 77:
        pytest.skip("tmux is not installed")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "reply seen" in done.stdout
    pane = (tmp_path / "pane.txt").read_text()
    assert "╭─ Nightcap" in pane and "Message Nightcap" in pane
