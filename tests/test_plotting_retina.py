"""plotting.set_style: in a notebook it switches the inline backend to retina PNGs (>= 150 dpi)."""

import matplotlib as mpl

from pmi_tutorial import plotting


def test_set_style_asks_for_retina_figures_in_a_notebook(monkeypatch):
    import IPython
    import matplotlib_inline.backend_inline as inline

    calls = []
    monkeypatch.setattr(IPython, "get_ipython", lambda: object())
    monkeypatch.setattr(inline, "set_matplotlib_formats", lambda *fmts: calls.append(fmts))
    plotting.set_style()
    assert calls == [("retina",)]
    assert 2 * mpl.rcParams["figure.dpi"] >= 150  # what a retina PNG is rendered at


def test_set_style_outside_a_notebook_configures_no_backend(monkeypatch):
    import IPython
    import matplotlib_inline.backend_inline as inline

    calls = []
    monkeypatch.setattr(IPython, "get_ipython", lambda: None)
    monkeypatch.setattr(inline, "set_matplotlib_formats", lambda *fmts: calls.append(fmts))
    plotting.set_style()
    assert calls == []
