"""Open every built page and every reader notebook in headless Chromium and check what a reader sees.

``python scripts/browser_check.py [_build/html [_build/reader_notebooks]] [--shots DIR]``
(``make check-browser``).

* Every page of ``_toc.yml`` in the built book, served from 127.0.0.1.
* Every executed reader notebook, rendered to HTML with nbconvert's classic template (what
  Jupyter's classic interface shows) into ``_build/reader_html``.

Each page is opened in Debian's Chromium (installed with apt-get when it is missing and this
runs as root), started headless with a fresh ``--user-data-dir``; ``--jobs N`` pages at once
(default one per core, at most four), their reports printed in the pages' order.  A probe added to the page
waits until MathJax has finished, then fails the page on

* a MathJax error (``mjx-merror``, MathJax 2's ``.MathJax_Error``) or math left untypeset:
  ``\\(``, ``\\[``, ``$$`` or ``$...$`` in the visible text (outside code; on a book page
  anywhere, the navigation and the table of contents included);
* an image that did not load (``naturalWidth == 0``);
* a figure in a cell output without a caption (book: ``<figure>`` with ``<figcaption>``;
  notebook: the "Figure: ..." line after it) or without alt text (book);
* a table shown as text: a line of ``| ... |`` cells in an output or a paragraph;
* a horizontal scrollbar in a cell output (an element of an output that scrolls sideways);
* a chapter taller than ``MAX_HEIGHT`` (12,000 px at 1280 px width): one lesson a page (every
  page's height is measured and printed; the reference pages that are not notebooks, the API
  reference above all, are not held to it);
* a book page that loads MathJax from anywhere but the book itself (``_static/mathjax``);
* in a notebook, raw MyST (``:::``, ``{cite}``, ``{doc}``...) or a solution not folded (every
  "Solution" must be the summary of a closed ``<details>``).

The book serves MathJax 3 from its own static files (``book/_ext/offline_mathjax.py``), and the
check serves the book as it is: math that does not typeset from the book's own copy fails.  The
classic notebook template loads MathJax 2 from a CDN; for the notebooks this check serves a
local copy in its place (``npm pack mathjax@2``, unpacked into ``~/.cache/pmi-tutorial``; or
``$MATHJAX2_DIR``).
With ``--shots DIR`` it also writes the screenshots named by ``--shoot`` (``book:NAME#anchor``
or ``notebook:NAME#anchor``) there.  Exit status 1 when any page has a problem.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from scripts.check_html import is_notebook_source, toc_files  # noqa: E402

WIDTH, HEIGHT = 1280, 1000
MAX_HEIGHT = 12000  # px at WIDTH: the tallest a book page may be
BUDGET_MS = "30000"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars"]
_MJ3 = re.compile(r'src="https://cdn\.jsdelivr\.net/npm/mathjax@3/es5/([\w.-]+\.js)"')
_MJ2 = re.compile(r'src="https://cdnjs\.cloudflare\.com/ajax/libs/mathjax/2[\d.]*/latest\.js\?config=([\w,-]+)"')

PROBE = r"""
<script>
(function () {
  function visibleText(root) {
    var out = [], walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT, null);
    while (walker.nextNode()) {
      var n = walker.currentNode, p = n.parentElement;
      if (!p || p.closest("script, style, code, pre, .highlight, mjx-container, .MathJax, .MathJax_CHTML, .MathJax_Preview, .MathJax_Display, .mjx-chtml, textarea, summary, .prompt, .input_prompt")) continue;
      if (p.closest("details:not([open])")) continue;
      if (p.offsetParent === null && getComputedStyle(p).position !== "fixed") continue;
      out.push(n.nodeValue);
    }
    return out.join("\n");
  }
  function check() {
    var kind = document.body.classList.contains("jp-Notebook") || document.querySelector("#notebook-container, .jp-Notebook") ? "notebook" : "book";
    var p = [];
    var errs = document.querySelectorAll("mjx-merror, .MathJax_Error, [data-mjx-error]");
    errs.forEach(function (e) { p.push("MathJax error: " + (e.getAttribute("data-mjx-error") || e.textContent).slice(0, 80)); });
    // the book: the whole page, navigation and table of contents included; a notebook: its cells
    var main = kind === "book" ? document.body : document.querySelector("main, #notebook-container, .jp-Notebook, body");
    var text = visibleText(main);
    var rawMath = /\\\(|\\\[|\$\$|(^|[^\\$])\$[^\s$](?:[^$\n]{0,200}?[^\s\\$])?\$/;
    var raw = text.match(new RegExp(rawMath.source, "g"));
    if (raw) {
      var i = text.search(rawMath);
      p.push("untypeset math (" + raw.length + "x), e.g. " + JSON.stringify(text.slice(Math.max(0, i - 30), i + 40)));
    }
    document.querySelectorAll("img").forEach(function (img) {
      if (!img.complete || img.naturalWidth === 0) p.push("broken image: " + (img.getAttribute("src") || "").slice(0, 80));
    });
    var outputs = document.querySelectorAll(".cell_output, .output_area, .jp-OutputArea-output");
    outputs.forEach(function (out) {
      out.querySelectorAll("img").forEach(function (img) {
        if (kind === "book") {
          var fig = img.closest("figure");
          var cap = fig && fig.querySelector("figcaption");
          if (!cap || !cap.textContent.trim()) p.push("figure without caption: " + (img.getAttribute("src") || "").slice(-40));
          if (!(img.getAttribute("alt") || "").trim()) p.push("figure without alt text: " + (img.getAttribute("src") || "").slice(-40));
        } else {
          var cell = img.closest(".cell, .jp-Cell");
          var next = cell && cell.nextElementSibling;
          if (!next || !/^\s*Figure:/.test(next.textContent)) p.push("figure without a caption line after it");
        }
      });
      out.querySelectorAll("*").forEach(function (el) {
        var ox = getComputedStyle(el).overflowX;
        if ((ox === "auto" || ox === "scroll") && el.scrollWidth > el.clientWidth + 2) {
          p.push("horizontal scrollbar in an output: <" + el.tagName.toLowerCase() + "> " + el.scrollWidth + " > " + el.clientWidth + " px: " + JSON.stringify(el.textContent.trim().slice(0, 60)));
        }
      });
    });
    document.querySelectorAll(".cell_output pre, .cell_output p, .output_area pre, .output_area p, p").forEach(function (el) {
      if (/^\s*\|.*\|\s*$/m.test(el.textContent) && /\|\s*:?-{3,}/.test(el.textContent)) {
        p.push("table rendered as text: " + JSON.stringify(el.textContent.trim().slice(0, 60)));
      }
    });
    if (kind === "notebook") {
      var myst = text.match(/:::|\{cite\}|\{doc\}|\{ref\}|:class:|\{include\}|\{admonition\}/);
      if (myst) p.push("raw MyST in the notebook: " + myst[0]);
      document.querySelectorAll("h1, h2, h3, h4, h5, h6, strong, b, p").forEach(function (el) {
        if (/^\s*Solution\b/.test(el.textContent) && !el.closest("summary")) {
          if (!el.closest("details:not([open])")) p.push("visible solution: " + JSON.stringify(el.textContent.trim().slice(0, 60)));
        }
      });
      document.querySelectorAll("details").forEach(function (d) {
        var s = d.querySelector("summary");
        if (s && /Solution/.test(s.textContent) && d.open) p.push("a solution's <details> is open");
      });
    }
    if (kind === "book") {
      document.querySelectorAll("script[src]").forEach(function (s) {
        var src = s.getAttribute("src");
        if (/mathjax/i.test(src) && !/^(\.\.\/)*_static\/mathjax\//.test(src)) p.push("MathJax loaded from outside the book: " + src.slice(0, 80));
      });
      if (document.querySelector(".math") && !document.querySelector("mjx-container")) p.push("the page has math but MathJax typeset none of it");
    }
    if (document.documentElement.scrollWidth > window.innerWidth + 2) {
      p.push("the page scrolls sideways: " + document.documentElement.scrollWidth + " > " + window.innerWidth + " px");
    }
    var math = document.querySelectorAll("mjx-container, .MathJax_CHTML, .MathJax").length;
    var pre = document.createElement("pre");
    pre.id = "pmi-check";
    var target = location.hash ? document.getElementById(decodeURIComponent(location.hash.slice(1))) : null;
    pre.textContent = JSON.stringify({kind: kind, problems: p, math: math, images: document.images.length,
      height: document.documentElement.scrollHeight,
      anchor: target ? Math.round(target.getBoundingClientRect().top + window.scrollY) : 0});
    pre.style.display = "none";
    document.body.appendChild(pre);
  }
  window.addEventListener("load", function () {
    var tries = 0;
    (function wait() {
      var mj = window.MathJax;
      if (mj && mj.startup && mj.startup.promise) { mj.startup.promise.then(check, check); }
      else if (mj && mj.Hub && mj.Hub.Queue) { mj.Hub.Queue(check); }
      else if (++tries > 100) { check(); }
      else { setTimeout(wait, 100); }
    })();
  });
})();
</script>
"""


def find_chromium(install: bool = True) -> str:
    for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if name and shutil.which(name):
            return shutil.which(name)
    if install and shutil.which("apt-get") and os.geteuid() == 0:
        print("browser_check: installing Debian's chromium (apt-get install -y chromium chromium-driver)", flush=True)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=False)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium", "chromium-driver"], env=env, check=False)
        return find_chromium(install=False)
    sys.exit("browser_check: no Chromium found; install Debian's: apt-get install -y chromium chromium-driver "
             "(or set CHROMIUM=/path/to/chrome)")


def local_mathjax(major: int) -> Path | None:
    """The folder of a local MathJax ``major`` (3: the es5 bundles, 2: MathJax.js), or None."""
    env = os.environ.get(f"MATHJAX{major}_DIR")
    if env:
        return Path(env)
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pmi-tutorial" / f"mathjax{major}"
    folder = cache / "package" / ("es5" if major == 3 else "")
    marker = "tex-mml-chtml.js" if major == 3 else "MathJax.js"
    if (folder / marker).exists():
        return folder
    if not shutil.which("npm"):
        print(f"browser_check: no npm for a local MathJax {major}; the pages use the CDN")
        return None
    cache.mkdir(parents=True, exist_ok=True)
    out = subprocess.run(["npm", "pack", f"mathjax@{major}", "--silent", "--pack-destination", str(cache)],
                         capture_output=True, text=True)
    tgz = sorted(cache.glob(f"mathjax-{major}*.tgz"))
    if out.returncode != 0 or not tgz:
        print(f"browser_check: npm pack mathjax@{major} failed ({out.stderr.strip()[:200]}); the pages use the CDN")
        return None
    with tarfile.open(tgz[-1]) as tar:
        tar.extractall(cache, filter="data")
    return folder if (folder / marker).exists() else None


class Handler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder; in HTML pages swaps the MathJax CDNs for local copies and adds the probe."""

    mathjax3: Path | None = None
    mathjax2: Path | None = None

    def log_message(self, *args):
        pass

    def do_GET(self):
        path = self.path.split("?", 1)[0].split("#", 1)[0]
        for prefix, folder in (("/_mathjax3/", self.mathjax3), ("/_mathjax2/", self.mathjax2)):
            if path.startswith(prefix) and folder is not None:
                return self._send(folder / path[len(prefix):])
        if path.endswith(".html"):
            file = Path(self.translate_path(path))
            if file.is_file():
                html = file.read_text(encoding="utf-8")
                if self.mathjax3 is not None:
                    html = _MJ3.sub(r'src="/_mathjax3/\1"', html)
                if self.mathjax2 is not None:
                    html = _MJ2.sub(r'src="/_mathjax2/MathJax.js?config=\1"', html)
                html = html.replace("</body>", PROBE + "</body>")
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


def chromium(binary: str, *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="pmi-chromium-") as profile:
        cmd = [binary, *FLAGS, f"--user-data-dir={profile}", f"--virtual-time-budget={BUDGET_MS}", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def check_page(binary: str, url: str) -> dict:
    """The probe's report for one page: ``{"problems": [...], "math": N, ...}``."""
    try:
        dom = chromium(binary, f"--window-size={WIDTH},{HEIGHT}", "--dump-dom", url)
    except subprocess.TimeoutExpired:
        return {"problems": ["chromium timed out"]}
    m = re.search(r'<pre id="pmi-check"[^>]*>(.*?)</pre>', dom.stdout, re.S)
    if not m:
        return {"problems": [f"the page never reported (chromium exit {dom.returncode}: {dom.stderr.strip()[-200:]})"]}
    import html as _html

    return json.loads(_html.unescape(m.group(1)))


def too_tall(report: dict) -> str | None:
    """The problem of a book page taller than ``MAX_HEIGHT`` (None when it is not)."""
    height = int(report.get("height", 0))
    if height <= MAX_HEIGHT:
        return None
    return (f"the page is {height:,} px tall at {WIDTH} px width, more than {MAX_HEIGHT:,}: "
            "split it along its lessons or fold what the reader need not see")


def shoot(binary: str, url: str, anchor: str, png: Path, height: int = 1400) -> None:
    """A ``WIDTH`` x ``height`` screenshot of ``url`` from the element ``#anchor`` down."""
    from PIL import Image

    info = check_page(binary, url + (f"#{anchor}" if anchor else ""))
    top = max(0, int(info.get("anchor", 0)) - 16)
    full = min(int(info.get("height", height)) + 50, top + height + 400, 20000)
    with tempfile.TemporaryDirectory(prefix="pmi-shot-") as tmp:
        raw = Path(tmp) / "full.png"
        chromium(binary, f"--window-size={WIDTH},{full}", f"--screenshot={raw}", url)
        with Image.open(raw) as im:
            im.crop((0, top, WIDTH, min(top + height, im.height))).save(png, optimize=True)


def render_notebooks(nb_dir: Path, out_dir: Path) -> list[Path]:
    """Every ``*.ipynb`` of ``nb_dir`` as HTML with nbconvert's classic template."""
    import nbformat
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="classic")
    out_dir.mkdir(parents=True, exist_ok=True)
    pages = []
    for nb_path in sorted(nb_dir.glob("*.ipynb")):
        body, _ = exporter.from_notebook_node(nbformat.read(nb_path, as_version=4))
        page = out_dir / f"{nb_path.stem}.html"
        page.write_text(body, encoding="utf-8")
        pages.append(page)
    return pages


def serve(folder: Path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def jobs_default() -> int:
    """Pages checked at once: one per core, at most four (as ``make unit``)."""
    return max(1, min(4, os.cpu_count() or 1))


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("html", nargs="?", type=Path, default=ROOT / "_build" / "html")
    ap.add_argument("notebooks", nargs="?", type=Path, default=ROOT / "_build" / "reader_notebooks")
    ap.add_argument("--shots", type=Path, help="write the --shoot screenshots into this folder")
    ap.add_argument("--shoot", action="append", default=[], help="book:NAME#anchor or notebook:NAME#anchor")
    ap.add_argument("--jobs", type=int, default=jobs_default(),
                    help="pages open at once, each in a Chromium of its own (default: one per core, at most 4)")
    args = ap.parse_args(argv)
    if args.jobs < 1:
        ap.error(f"--jobs must be a positive integer, got {args.jobs}")
    html_dir = args.html.resolve()
    if not (html_dir / "index.html").exists():
        print(f"browser_check: {html_dir} holds no built book; run `make build-book`")
        return 1
    notebooks = sorted(args.notebooks.glob("*.ipynb")) if args.notebooks.is_dir() else []
    if not notebooks:
        print(f"browser_check: no executed reader notebooks in {args.notebooks}; run `make nbval`")
        return 1
    binary = find_chromium()
    # the book's MathJax 3 is its own (_static/mathjax); only the notebooks' MathJax 2 is swapped
    Handler.mathjax3, Handler.mathjax2 = None, local_mathjax(2)
    print(f"browser_check: {binary}; the book's own MathJax 3, "
          f"MathJax 2 for the notebooks from {Handler.mathjax2 or 'the CDN'}", flush=True)
    nb_html = ROOT / "_build" / "reader_html"
    render_notebooks(args.notebooks, nb_html)
    root = html_dir.parent.parent if (html_dir.parent.parent / "_toc.yml").exists() else ROOT
    book_server, book = serve(html_dir)
    nb_server, nbs = serve(nb_html)
    failures = 0
    try:
        targets = [("book", name, f"{book}/{name}.html") for name in toc_files(root / "_toc.yml")]
        targets += [("notebook", p.stem, f"{nbs}/{p.stem}.html") for p in notebooks]
        # each page in a Chromium of its own, --jobs at once; the reports are printed in order
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            reports = pool.map(lambda target: check_page(binary, target[2]), targets)
            for (kind, name, url), report in zip(targets, reports):
                problems = report.get("problems", [])
                if kind == "book" and is_notebook_source(root / f"{name}.md") and too_tall(report):
                    problems.append(too_tall(report))
                status = "OK" if not problems else f"{len(problems)} problem(s)"
                print(f"  {kind:8s} {name:28s} {report.get('math', 0):4d} formulas, "
                      f"{report.get('images', 0):3d} images, {report.get('height', 0):6,d} px  {status}", flush=True)
                for p in problems[:12]:
                    print(f"      - {p}")
                failures += bool(problems)
        if args.shots:
            args.shots.mkdir(parents=True, exist_ok=True)
            for spec in args.shoot:
                kind, rest = spec.split(":", 1)
                base = book if kind == "book" else nbs
                name, _, anchor = rest.partition("#")
                png = args.shots / f"{kind}_{Path(name).name}.png"
                shoot(binary, f"{base}/{name}.html", anchor, png)
                print(f"  screenshot {png}")
    finally:
        book_server.shutdown()
        nb_server.shutdown()
    n = len(targets)
    print(f"browser_check: {n - failures} of {n} pages OK")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
