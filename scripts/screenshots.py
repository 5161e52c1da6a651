"""Screenshot every page of the built book: ``python scripts/screenshots.py [_build/html [screenshots]]``.

Each page named in ``_toc.yml`` is served from 127.0.0.1 and opened in headless Chromium with
the local MathJax of :mod:`scripts.browser_check` (its server, probe and Chromium runner), which
also reports the page's problems; ``screenshots/NAME.png`` is the page at its full height.
Exits 1 when a page could not be shot or has a problem the browser check reports.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from scripts import browser_check as B  # noqa: E402
from scripts.check_html import toc_files  # noqa: E402

MAX_HEIGHT = 30000


def shoot_page(binary: str, url: str, png: Path) -> tuple[dict, list]:
    """The probe's report of ``url`` and a full-height screenshot of it in ``png``."""
    info = B.check_page(binary, url)
    height = max(600, min(int(info.get("height", 900)) + 20, MAX_HEIGHT))
    B.chromium(binary, f"--window-size={B.WIDTH},{height}", f"--screenshot={png}", url)
    problems = list(info.get("problems", []))
    if not png.exists() or png.stat().st_size == 0:
        problems.append("no screenshot written")
    return info, problems


def main(argv: list[str]) -> int:
    html_dir = Path(argv[0] if argv else ROOT / "_build" / "html").resolve()
    out_dir = Path(argv[1] if len(argv) > 1 else ROOT / "screenshots").resolve()
    if not (html_dir / "index.html").exists():
        print(f"screenshots: {html_dir} holds no built book; run `make book` first")
        return 1
    root = html_dir.parent.parent if (html_dir.parent.parent / "_toc.yml").exists() else ROOT
    binary = B.find_chromium()
    B.Handler.mathjax3 = B.local_mathjax(3)
    print(f"screenshots: MathJax from {B.Handler.mathjax3 or 'the CDN'}")
    server, base = B.serve(html_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    failures = 0
    try:
        for name in toc_files(root / "_toc.yml"):
            png = out_dir / f"{Path(name).name}.png"
            png.unlink(missing_ok=True)
            try:
                info, problems = shoot_page(binary, f"{base}/{name}.html", png)
            except subprocess.TimeoutExpired:
                info, problems = {}, ["chromium timed out"]
            status = "OK" if not problems else "PROBLEM: " + "; ".join(problems[:3])
            print(f"  {png.relative_to(out_dir.parent)}: height {info.get('height', '?')} px, "
                  f"{info.get('math', 0)} formulas  {status}")
            failures += bool(problems)
    finally:
        server.shutdown()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
