"""Headless Chromium for tests: render a page, dump its DOM after load, and take a screenshot.

A copy of the page gets a small probe script (the page itself has none) that records, after the load
event, each image's decoded size, any script error or console error, and whether the page is wider than
the window; the dumped DOM carries those records as attributes.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

_PROBE = """<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(String(e.message || e.type)), true);
const consoleError = console.error; console.error = (...a) => { window.__errors.push(a.join(' ')); consoleError(...a); };
window.addEventListener('load', () => {
  for (const img of document.images) {
    img.setAttribute('data-probe-width', img.naturalWidth);
    img.setAttribute('data-probe-height', img.naturalHeight);
    img.setAttribute('data-probe-complete', img.complete);
  }
  const b = document.body;
  b.setAttribute('data-probe-loaded', 'yes');
  b.setAttribute('data-probe-errors', JSON.stringify(window.__errors));
  b.setAttribute('data-probe-page-width', document.documentElement.scrollWidth);
  b.setAttribute('data-probe-window-width', window.innerWidth);
});
</script>"""

PHONE_WIDTH_PX = 390


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def _run(args: list[str]) -> subprocess.CompletedProcess:
    base = [chromium_path(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--no-first-run", "--disable-extensions", "--disable-background-networking",
            f"--window-size={PHONE_WIDTH_PX},2400", "--virtual-time-budget=5000"]
    return subprocess.run(base + args, capture_output=True, text=True, timeout=120)


def probed_dom(page: Path, work: Path) -> str:
    """The DOM of `page` after load, with the probe's records (the page is copied, never changed)."""
    text = page.read_text()
    probed = work / f"probed-{page.name}"
    probed.write_text(text.replace("<head>", "<head>\n" + _PROBE, 1))
    proc = _run(["--dump-dom", probed.as_uri()])
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def screenshot(page: Path, destination: Path) -> Path:
    proc = _run([f"--screenshot={destination}", page.as_uri()])
    assert proc.returncode == 0 and destination.exists(), proc.stderr[-2000:]
    return destination
