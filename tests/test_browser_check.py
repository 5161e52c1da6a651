"""scripts/browser_check.py in a real headless Chromium: every kind of problem is found.

The tests that open pages are skipped, with the reason, where no Chromium is installed (make
check-browser installs it).
"""

import shutil
import subprocess

import pytest

from scripts import browser_check as bc

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)

GOOD_BOOK = """<html><body><main>
<p>Plain text and code: <code>$$x$$</code>.</p>
<div class="cell_output"><figure><img src="data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==" alt="a dot"><figcaption>A dot.</figcaption></figure>
<table><tr><th>a</th></tr><tr><td>1</td></tr></table></div>
</main></body></html>"""


def _serve(tmp_path, pages):
    for name, html in pages.items():
        (tmp_path / f"{name}.html").write_text(html)
    server, base = bc.serve(tmp_path)
    return server, base


@pytest.fixture()
def site(tmp_path):
    if CHROMIUM is None:
        pytest.skip("no Chromium (apt-get install -y chromium)")
    servers = []

    def make(pages):
        server, base = _serve(tmp_path, pages)
        servers.append(server)
        return base

    yield make
    for s in servers:
        s.shutdown()


def test_a_good_page_passes(site):
    base = site({"good": GOOD_BOOK})
    assert bc.check_page(CHROMIUM, f"{base}/good.html")["problems"] == []


@pytest.mark.parametrize("body, what", [
    ('<p>an untypeset \\(x^2\\) formula</p>', "untypeset math"),
    ('<img src="missing.png" alt="x">', "broken image"),
    ('<div class="cell_output"><img src="data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==" alt=""></div>', "without caption"),
    ('<div class="cell_output"><pre>| a | b |\n| --- | --- |\n| 1 | 2 |</pre></div>', "table rendered as text"),
    ('<div class="cell_output"><pre style="overflow-x:auto;width:200px;white-space:pre">' + "x" * 400 + '</pre></div>', "horizontal scrollbar"),
    ('<script src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"></script><p>x</p>', "MathJax loaded from outside the book"),
    ('<span class="math notranslate nohighlight">x</span>', "MathJax typeset none"),
])
def test_problems_are_found(site, body, what):
    base = site({"bad": f"<html><body><main>{body}</main></body></html>"})
    problems = bc.check_page(CHROMIUM, f"{base}/bad.html")["problems"]
    assert any(what in p for p in problems), problems


def test_notebook_checks(site):
    nb = ('<html><body><div id="notebook-container">{}</div></body></html>')
    base = site({
        "folded": nb.format('<details><summary><strong>Solution</strong></summary><p>hidden</p></details>'),
        "open": nb.format('<h3>Solution</h3><p>shown</p>'),
        "myst": nb.format('<p>:::{admonition} Exercise 1</p>'),
    })
    assert bc.check_page(CHROMIUM, f"{base}/folded.html")["problems"] == []
    assert any("visible solution" in p for p in bc.check_page(CHROMIUM, f"{base}/open.html")["problems"])
    assert any("raw MyST" in p for p in bc.check_page(CHROMIUM, f"{base}/myst.html")["problems"])


def test_untypeset_dollar_math_is_found(site):
    base = site({"dollar": "<html><body><main><p>the mean $n$ of it</p></main></body></html>"})
    problems = bc.check_page(CHROMIUM, f"{base}/dollar.html")["problems"]
    assert any("untypeset math" in p for p in problems), problems


def test_the_page_height_is_measured_and_a_tall_page_fails(site):
    base = site({"tall": f'<html><body><main><div style="height:{bc.MAX_HEIGHT + 500}px">long</div></main></body></html>',
                 "short": '<html><body><main><div style="height:3000px">short</div></main></body></html>'})
    tall = bc.check_page(CHROMIUM, f"{base}/tall.html")
    short = bc.check_page(CHROMIUM, f"{base}/short.html")
    assert tall["height"] > bc.MAX_HEIGHT and "px tall" in bc.too_tall(tall)
    assert 3000 <= short["height"] < bc.MAX_HEIGHT and bc.too_tall(short) is None


def test_untypeset_math_in_the_navigation_fails_a_book_page(site):
    base = site({"nav": '<html><body><nav><a href="#">the \\(acc_r\\) of every class</a></nav>'
                        "<main><p>text</p></main></body></html>"})
    problems = bc.check_page(CHROMIUM, f"{base}/nav.html")["problems"]
    assert any("untypeset math" in p for p in problems), problems


def test_main_checks_pages_jobs_at_once_and_reports_them_in_order(tmp_path, monkeypatch, capsys):
    """``--jobs 2``: two pages open at once, never more; the lines come in the pages' order
    whatever order the pages finish in; a page with a problem fails the run."""
    import threading
    import time

    html = tmp_path / "html"
    html.mkdir()
    (html / "index.html").write_text("<html></html>")
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    for name in ("a", "b", "c"):
        (nbs / f"{name}.ipynb").write_text("{}")
    monkeypatch.setattr(bc, "find_chromium", lambda install=True: "chromium")
    monkeypatch.setattr(bc, "local_mathjax", lambda major: None)
    monkeypatch.setattr(bc, "render_notebooks", lambda src, out: [])
    lock, now, most, order = threading.Lock(), [0], [0], []

    def check_page(binary, url):
        with lock:
            now[0] += 1
            most[0] = max(most[0], now[0])
        time.sleep(0.05 if url.endswith("/a.html") else 0.01)  # the first page finishes last
        with lock:
            now[0] -= 1
            order.append(url)
        return {"problems": ["bad"] if url.endswith("/c.html") else [], "math": 0, "images": 0, "height": 100}

    monkeypatch.setattr(bc, "check_page", check_page)
    assert bc.main([str(html), str(nbs), "--jobs", "2"]) == 1
    out = capsys.readouterr().out
    pages = bc.toc_files(bc.ROOT / "_toc.yml")
    printed = [line.split()[1] for line in out.splitlines() if line.startswith("  ")
               and line.split()[0] in ("book", "notebook")]
    assert printed == pages + ["a", "b", "c"]
    assert most[0] == 2 and order[0] != order[-1] and not order[0].endswith("/a.html")
    assert f"browser_check: {len(pages) + 2} of {len(pages) + 3} pages OK" in out
    with pytest.raises(SystemExit):
        bc.main([str(html), str(nbs), "--jobs", "0"])
    assert "--jobs must be a positive integer, got 0" in capsys.readouterr().err
