"""scripts/check_html.py: the equation-number check (a page citing "Eq. N" beside a display
numbered otherwise), on pages in the form Sphinx writes them."""

from scripts.check_html import cited_equations, equation_problems, mathjax_source_problems


def page(*blocks: str) -> str:
    return "<html><body><main>" + "\n".join(blocks) + "</main></body></html>"


def display(number: str | None, latex: str = "x") -> str:
    eqno = f'<span class="eqno">({number})<a class="headerlink" href="#e">¶</a></span>' if number else ""
    return f'<div class="math notranslate nohighlight" id="equation-e">\n{eqno}\\[{latex}\\]</div>'


def test_cited_equations_reads_single_numbers_ranges_and_pairs():
    assert cited_equations("the claim (Eq. 13), then Eqs. 5-6 and Eq. (9)") == {13, 5, 6, 9}
    assert cited_equations("Eq. 13\u201315 and Eqs. 10 and 11") == {13, 14, 15, 10, 11}
    assert cited_equations("equation 13, eq 14, Equation (3)") == set()


def test_the_issues_example_fails():
    # "the best class (Eq. 14)" over a formula labelled (13)
    html = page("<p>PMI reports the best class (Eq. 14):</p>", display("13"))
    problems = equation_problems(html)
    assert len(problems) == 1 and "(13)" in problems[0] and "Eq. 14" in problems[0]


def test_the_papers_number_beside_its_citation_passes():
    assert equation_problems(page("<p>the best class (Eq. 14):</p>", display("14"))) == []
    assert equation_problems(page("<p>the unbiased estimate (Eqs. 10-11):</p>", display("10\u201311"))) == []


def test_the_books_own_scheme_never_clashes():
    assert equation_problems(page("<p>unlike Eq. 13, a calibrated test:</p>", display("B3"))) == []
    assert equation_problems(page("<p>no citation here:</p>", display("4"))) == []


def test_numbers_the_paper_does_not_have_fail():
    assert any("(16)" in p for p in equation_problems(page("<p>a rule:</p>", display("16"))))
    assert any("Eq. 16" in p for p in equation_problems(page("<p>as Eq. 16 says</p>")))


def test_a_mathjax_tag_counts_as_the_displays_number():
    html = page("<p>the claim (Eq. 15):</p>",
                '<div class="math notranslate nohighlight">\\[acc_r - 1/m \\ge \\rho \\tag{13}\\]</div>')
    assert len(equation_problems(html)) == 1


def test_a_paragraph_not_right_before_the_display_is_not_its_lead():
    html = page("<p>see Eq. 14</p>", '<div class="cell">code</div>', display("13"))
    assert equation_problems(html) == []


def test_mathjax_must_come_from_the_books_own_static_files():
    assert mathjax_source_problems(["_static/mathjax/tex-mml-chtml.js", "../_static/mathjax/tex-mml-chtml.js?v=1"]) == []
    cdn = mathjax_source_problems(["https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"])
    assert len(cdn) == 1 and "outside the book" in cdn[0]
