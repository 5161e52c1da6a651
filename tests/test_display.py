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
