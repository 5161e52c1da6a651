"""pmi_tutorial.display: the compact provenance line."""

import pytest

from pmi_tutorial.display import Provenance, profile_line, provenance, provenance_line
from pmi_tutorial.profiles import PAPER, QUICK


def _result(runs):
    return {"settings": {"profile": {"name": "quick"}}, "runs": runs}


RUN = {"command": "python -m pmi_tutorial reproduce table1", "git_commit": "0123456789abcdef-dirty",
       "started": "2026-11-30T10:00:00+00:00", "hardware": {"processor": "x86_64", "cpu_count": 2}}


def test_line_has_command_profile_commit_date_and_hardware():
    line = provenance_line(_result([RUN]))
    assert line == ("python -m pmi_tutorial reproduce table1 · profile quick · commit 0123456789ab"
                    " · 2026-11-30 · x86_64 (2 CPUs)")
    assert "\n" not in line


def test_latest_run_and_run_count_and_gpu():
    later = dict(RUN, command="second", hardware={"gpu": "NVIDIA T4"})
    line = provenance_line(_result([RUN, later]))
    assert line.startswith("second · ") and line.endswith("NVIDIA T4 · 2 runs")


def test_single_provenance_record():
    assert provenance_line({"profile": "paper", "provenance": RUN}).split(" · ")[1] == "profile paper"


def test_html_folds_escaped_details():
    p = provenance(_result([RUN]), details="a <b> & c\nsecond line")
    html = p._repr_html_()
    assert html.startswith('<details class="pmi-provenance"><summary>python -m')
    assert "<pre>a &lt;b&gt; &amp; c\nsecond line</pre></details>" in html
    assert str(p) == p.line and isinstance(p, Provenance)


@pytest.mark.parametrize("bad", [{}, {"runs": []}, [1, 2]])
def test_bad_result_is_refused(bad):
    with pytest.raises(ValueError, match="provenance"):
        provenance_line(bad)


def test_profile_line_is_one_line_with_the_whole_banner_folded():
    shown = profile_line(QUICK)
    assert str(shown) == f"Profile quick (PMI_PROFILE): {len(QUICK.reduced)} settings reduced from the paper's"
    html = shown._repr_html_()
    assert html.count("<summary>") == 1 and "\n" not in shown.line
    for item in QUICK.reduced:  # every line of the banner is in the folded part
        assert item.replace("'", "&#x27;") in html
    assert str(profile_line(PAPER)).startswith("Profile paper (PMI_PROFILE): the paper's settings")


def test_profile_line_follows_pmi_profile(monkeypatch):
    monkeypatch.setenv("PMI_PROFILE", "paper")
    assert str(profile_line()).startswith("Profile paper (")
    with pytest.raises(ValueError, match="Profile"):
        profile_line("quick")


def test_table_html_has_one_cell_per_value_and_marks_the_singled_out_ones():
    from html.parser import HTMLParser

    from pmi_tutorial.display import Folded, Mark, Table

    t = Table(["model", "ours", "paper"], [["MLP", "0.38", Mark("0.50")], ["LeNet-5", "0.42", "0.47"]],
              caption="Table I", legend="outside our range", groups=[("", 1), ("acc", 2)])

    class Cells(HTMLParser):
        def __init__(self):
            super().__init__()
            self.cells, self.marked, self._in = [], [], None

        def handle_starttag(self, tag, attrs):
            if tag in ("td", "th"):
                self._in = dict(attrs).get("class", "")
                self.cells.append("")

        def handle_data(self, data):
            if self._in is not None:
                self.cells[-1] += data
                if "pmi-mark" in self._in:
                    self.marked.append(data)

        def handle_endtag(self, tag):
            if tag in ("td", "th"):
                self._in = None

    p = Cells()
    p.feed(t._repr_html_())
    assert p.cells == ["", "acc", "model", "ours", "paper", "MLP", "0.38", "0.50\u2020", "LeNet-5", "0.42", "0.47"]
    assert p.marked == ["0.50\u2020"]
    text = str(t).splitlines()
    assert text[0] == "Table I" and text[3].split() == ["MLP", "0.38", "0.50\u2020"] and "outside" in text[-1]
    folded = Folded("2 rows", t)._repr_html_()
    assert folded.startswith('<details class="pmi-folded"><summary>2 rows</summary><table')


def test_table_refuses_ragged_rows():
    from pmi_tutorial.display import Table

    with pytest.raises(ValueError, match="row 1 has 2 cells"):
        Table(["a", "b", "c"], [["1", "2", "3"], ["1", "2"]])
    with pytest.raises(ValueError, match="spans add up"):
        Table(["a", "b"], [], groups=[("x", 3)])


def test_comparison_table_marks_exactly_the_paper_values_outside_the_seed_range():
    from pmi_tutorial.display import Mark, comparison_table

    base = {"model": "mlp", "m": 3, "r_opt": 3, "paper_r_opt": 6, "acc_r_opt": 0.38, "mean_acc_r": 0.329}
    rows = [dict(base, n=100, paper_acc_r_opt=0.50, paper_mean_acc_r=0.392,
                 acc_r_opt_range=[0.36, 0.55], mean_acc_r_range=[0.312, 0.362]),
            dict(base, n=300, paper_acc_r_opt=0.73, paper_mean_acc_r=0.362,
                 acc_r_opt_range=[0.36, 0.55], mean_acc_r_range=[0.312, 0.362])]
    t = comparison_table(rows, seeds=10)
    marked = [(i, j) for i, r in enumerate(t.rows) for j, c in enumerate(r) if isinstance(c, Mark)]
    # brute force: a paper value is outside when it is below the low or above the high end
    expect = [(i, j) for i, r in enumerate(rows)
              for j, (v, rng) in ((8, (r["paper_acc_r_opt"], r["acc_r_opt_range"])),
                                  (11, (r["paper_mean_acc_r"], r["mean_acc_r_range"])))
              if not rng[0] <= v <= rng[1]]
    assert marked == expect == [(0, 11), (1, 8)]
    assert t.rows[0][:3] == ["MLP", "3", "100"] and t.rows[1][:3] == ["", "", "300"]
    assert "10 seeds" in t.header and "outside" in t.legend
    plain = comparison_table([{k: v for k, v in r.items() if not k.endswith("_range")} for r in rows])
    assert len(plain.header) == 10 and not any(isinstance(c, Mark) for r in plain.rows for c in r)
    with pytest.raises(ValueError, match="seeds"):
        comparison_table(rows)
