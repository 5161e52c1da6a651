"""scripts/check_outputs.py: warnings, stderr, uncaptioned or low-resolution figures fail."""

import base64
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nbformat  # noqa: E402
import pytest  # noqa: E402

from scripts import check_outputs as co  # noqa: E402


def _png(dpi):
    # matplotlib's defaults, whatever style an earlier test in this process set (a tight bbox
    # would change the size)
    with plt.rc_context(rc=plt.rcParamsDefault):
        fig, ax = plt.subplots(figsize=(2, 1), dpi=dpi)
        ax.plot([0, 1])
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches=None)
        plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _figure_cell(png, shown_width, caption="A line.", alt="A rising line."):
    meta = {"mystnb": {"figure": {"caption": caption}, "image": {"alt": alt}}} if caption else {}
    cell = nbformat.v4.new_code_cell("plt.show()", metadata=meta)
    md = {"image/png": {"width": shown_width}} if shown_width else {}
    cell.outputs = [nbformat.v4.new_output("display_data", data={"image/png": png, "text/plain": "<Figure>"},
                                           metadata=md)]
    return cell


def _nb(*cells):
    return nbformat.v4.new_notebook(cells=list(cells))


def _stream(name, text):
    cell = nbformat.v4.new_code_cell("x")
    cell.outputs = [nbformat.v4.new_output("stream", name=name, text=text)]
    return cell


def test_png_size_reads_the_header():
    assert co.png_size(base64.b64decode(_png(100))) == (200, 100)


def test_a_clean_notebook_passes():
    assert co.check_notebook(_nb(_stream("stdout", "acc 0.93\n"), _figure_cell(_png(200), 200)), "n") == []


@pytest.mark.parametrize("cell, what", [
    (_stream("stderr", "something\n"), "stderr"),
    (_stream("stdout", "/x.py:3: UserWarning: The figure layout has changed to tight\n"), "warning"),
    (_figure_cell(_png(200), 200, caption=None), "without caption"),
    (_figure_cell(_png(200), 200, alt=""), "without alt text"),
    (_figure_cell(_png(100), None), "96 dpi"),
])
def test_problems_are_found(cell, what):
    problems = co.check_notebook(_nb(cell), "n")
    assert len(problems) >= 1 and any(what in p for p in problems), problems


def test_error_output_is_a_problem():
    cell = nbformat.v4.new_code_cell("1/0")
    cell.outputs = [nbformat.v4.new_output("error", ename="ZeroDivisionError", evalue="division by zero", traceback=[])]
    assert "ZeroDivisionError" in co.check_notebook(_nb(cell), "n")[0]


def test_missing_notebooks_fail(tmp_path):
    assert co.main([str(tmp_path), "--expect", "2"]) == 1
