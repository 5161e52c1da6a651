"""scripts/browser_check.py in a real headless Chromium: every kind of problem is found.

Skipped, with the reason, where no Chromium is installed (make check-browser installs it).
"""

import shutil
import subprocess

import pytest

from scripts import browser_check as bc

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium (apt-get install -y chromium)")

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
