"""Screenshot every page of the built book: ``python scripts/screenshots.py [_build/html [screenshots]]``.

Debian's headless Chromium opens each page named in ``_toc.yml`` from a small HTTP server on
127.0.0.1, waits until MathJax has typeset the page, and writes ``screenshots/NAME.png`` at
the full height of the page.  Two passes a page: the first reads the page height and counts
typeset formulas (``mjx-container``) from the DOM, the second takes the picture at that height.

MathJax normally comes from a CDN.  Where there is no internet (CI, this project's machines)
the server swaps the CDN script for a local copy of the same MathJax 3 release: ``$MATHJAX_DIR``
(a folder holding ``tex-mml-chtml.js``), or one unpacked into ``~/.cache/pmi-tutorial`` from
the npm registry (``npm pack mathjax@3``).

Exits 1 when a page could not be shot or has math that MathJax did not typeset.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from scripts.check_html import toc_files  # noqa: E402

WIDTH = 1280
MAX_HEIGHT = 30000
BUDGET_MS = "30000"
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars", "--disable-dev-shm-usage",
]
_MATHJAX_SRC = re.compile(r'src="https://cdn\.jsdelivr\.net/npm/mathjax@3/es5/([\w.-]+\.js)"')
# Appended to every page: when MathJax is done (or the page has no math) it leaves a marker
# element with the page height and the number of typeset formulas for the first pass to read.
_PROBE = """
<script>
window.addEventListener("load", function () {
  function done() {
    var d = document.createElement("div");
    d.id = "pmi-shot-ready";
    d.setAttribute("data-height", document.documentElement.scrollHeight);
    d.setAttribute("data-math", document.querySelectorAll(".math").length);
    d.setAttribute("data-mjx", document.querySelectorAll("mjx-container").length);
    document.body.appendChild(d);
  }
  var tries = 0;
  (function wait() {
    var mj = window.MathJax;
    if (mj && mj.startup && mj.startup.promise) { mj.startup.promise.then(done, done); }
    else if (!document.querySelector(".math") || ++tries > 200) { done(); }
    else { setTimeout(wait, 100); }
  })();
});
</script>
"""


def find_chromium() -> str:
    for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    sys.exit("screenshots: no Chromium found; install Debian's: apt-get install -y chromium "
             "(or set CHROMIUM=/path/to/chrome)")


def local_mathjax() -> Path | None:
    """A folder with MathJax 3's es5 bundles, or None (then the CDN is used)."""
    env = os.environ.get("MATHJAX_DIR")
    if env:
        path = Path(env)
        if not (path / "tex-mml-chtml.js").exists():
            sys.exit(f"screenshots: MATHJAX_DIR={env} holds no tex-mml-chtml.js")
        return path
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pmi-tutorial" / "mathjax3"
    es5 = cache / "package" / "es5"
    if (es5 / "tex-mml-chtml.js").exists():
        return es5
    if not shutil.which("npm"):
        print("screenshots: no local MathJax and no npm; pages load MathJax from the CDN")
        return None
    cache.mkdir(parents=True, exist_ok=True)
    out = subprocess.run(["npm", "pack", "mathjax@3", "--silent", "--pack-destination", str(cache)],
                         capture_output=True, text=True)
    tgz = sorted(cache.glob("mathjax-3*.tgz"))
    if out.returncode != 0 or not tgz:
        print(f"screenshots: npm pack mathjax@3 failed ({out.stderr.strip()[:200]}); using the CDN")
        return None
    with tarfile.open(tgz[-1]) as tar:
        tar.extractall(cache, filter="data")
    return es5 if (es5 / "tex-mml-chtml.js").exists() else None


class Handler(http.server.SimpleHTTPRequestHandler):
    """Serves the book; in HTML pages swaps the MathJax CDN for /_mathjax/ and adds the probe."""

    mathjax: Path | None = None

    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):
        path = self.path.split("?", 1)[0].split("#", 1)[0]
        if path.startswith("/_mathjax/") and self.mathjax is not None:
            return self._send(self.mathjax / path[len("/_mathjax/"):])
        if path.endswith(".html"):
            file = Path(self.translate_path(path))
            if file.is_file():
                html = file.read_text(encoding="utf-8")
                if self.mathjax is not None:
                    html = _MATHJAX_SRC.sub(r'src="/_mathjax/\1"', html)
                html = html.replace("</body>", _PROBE + "</body>")
                return self._send_bytes(html.encode("utf-8"), "text/html; charset=utf-8")
        return super().do_GET()

    def _send(self, file: Path):
        if not file.is_file():
            return self.send_error(404)
        return self._send_bytes(file.read_bytes(), self.guess_type(str(file)))

    def _send_bytes(self, body: bytes, ctype: str):
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def chromium(binary: str, profile: str, *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    cmd = [binary, *FLAGS, f"--user-data-dir={profile}", f"--virtual-time-budget={BUDGET_MS}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def shoot(binary: str, url: str, png: Path) -> tuple[dict, str | None]:
    """Two passes: read height and math counts, then screenshot at that height."""
    with tempfile.TemporaryDirectory(prefix="pmi-chromium-") as profile:
        dom = chromium(binary, profile, f"--window-size={WIDTH},900", "--dump-dom", url)
        marker = re.search(r'<div id="pmi-shot-ready"([^>]*)>', dom.stdout)
        if not marker:
            return {}, f"page never reported ready (chromium exit {dom.returncode}: {dom.stderr.strip()[-200:]})"
        info = {k: int(v) for k, v in re.findall(r'data-(\w+)="(\d+)"', marker.group(1))}
        height = max(600, min(info.get("height", 900) + 20, MAX_HEIGHT))
        shot = chromium(binary, profile, f"--window-size={WIDTH},{height}", f"--screenshot={png}", url)
        if not png.exists() or png.stat().st_size == 0:
            return info, f"no screenshot written (chromium exit {shot.returncode}: {shot.stderr.strip()[-200:]})"
    if info.get("math", 0) and not info.get("mjx", 0):
        return info, f"{info['math']} math elements but MathJax typeset none"
    return info, None


def main(argv: list[str]) -> int:
    html_dir = Path(argv[0] if argv else ROOT / "_build" / "html").resolve()
    out_dir = Path(argv[1] if len(argv) > 1 else ROOT / "screenshots").resolve()
    if not (html_dir / "index.html").exists():
        print(f"screenshots: {html_dir} holds no built book; run `make book` first")
        return 1
    root = html_dir.parent.parent if (html_dir.parent.parent / "_toc.yml").exists() else ROOT
    binary = find_chromium()
    Handler.mathjax = local_mathjax()
    print(f"screenshots: MathJax from {Handler.mathjax or 'the CDN'}")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(html_dir)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    out_dir.mkdir(parents=True, exist_ok=True)
    failures = 0
    try:
        for name in toc_files(root / "_toc.yml"):
            png = out_dir / f"{Path(name).name}.png"
            png.unlink(missing_ok=True)
            try:
                info, problem = shoot(binary, f"{base}/{name}.html", png)
            except subprocess.TimeoutExpired:
                info, problem = {}, "chromium timed out"
            status = "OK" if problem is None else f"PROBLEM: {problem}"
            print(f"  {png.relative_to(out_dir.parent)}: height {info.get('height', '?')} px, "
                  f"{info.get('mjx', 0)}/{info.get('math', 0)} formulas typeset  {status}")
            failures += problem is not None
    finally:
        server.shutdown()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
