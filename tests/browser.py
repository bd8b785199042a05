"""A page rendered by Debian's headless chromium: a screenshot and the page's console messages. Tests that use it
skip when chromium is not installed (`.ci/run` installs it)."""

import shutil
import subprocess

import pytest

CHROMIUM = shutil.which("chromium")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")


def screenshot(page, image, height=3000) -> list[str]:
    """Renders `page` into the PNG `image`; returns the page's console lines (errors, logs)."""
    assert CHROMIUM is not None
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-background-networking",
        "--disable-gpu",
        f"--window-size=1100,{height}",
        f"--screenshot={image}",
        "--enable-logging=stderr",
        "--v=0",
        page.as_uri(),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
