"""book/_ext: colab_notebooks.py (the theme gets the repository from pmi_tutorial.repository) and
equation_numbers.py (the paper's numbers for its equations, B1, B2, ... for the book's own)."""

import importlib.util
from pathlib import Path
from types import SimpleNamespace

from pmi_tutorial import repository

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("colab_notebooks", ROOT / "book" / "_ext" / "colab_notebooks.py")
ext = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ext)


def test_config_takes_the_repository_setting():
    config = SimpleNamespace(html_theme_options={"launch_buttons": {"colab_url": "x"}}, html_baseurl="")
    ext._on_config(None, config)
    opts = config.html_theme_options
    assert opts["repository_url"] == repository.URL and opts["repository_branch"] == repository.BRANCH
    assert opts["use_repository_button"] is True and opts["launch_buttons"] == {"colab_url": "x"}
    assert [link["url"] for link in opts["icon_links"]] == [repository.pages_url()]
    assert config.html_baseurl == repository.pages_url()
    ext._on_config(None, config)  # idempotent: one header link, not two
    assert len(config.html_theme_options["icon_links"]) == 1


def test_source_read_fills_in_the_repository_values():
    source = ["clone {{ repository_url }} and read {{ book_url }}"]
    ext._on_source_read(None, "book/x", source)
    assert source == [f"clone {repository.URL} and read {repository.pages_url()}"]


def test_colab_button_points_at_the_reader_notebook():
    url = "https://colab.research.google.com/github/o/n/blob/main/book/mmd.md"
    assert ext.colab_url(url) == "https://colab.research.google.com/github/o/n/blob/main/notebooks/mmd.ipynb"


eq_spec = importlib.util.spec_from_file_location("equation_numbers", ROOT / "book" / "_ext" / "equation_numbers.py")
eq_ext = importlib.util.module_from_spec(eq_spec)
eq_spec.loader.exec_module(eq_ext)


def test_split_tag_takes_the_papers_number_out_of_the_formula():
    assert eq_ext.split_tag(r"acc_r - \frac{1}{m} \ge \rho \tag{13}") == (r"acc_r - \frac{1}{m} \ge \rho", "13")
    assert eq_ext.split_tag(r"h[i, j] = \dots \tag{10-11}")[1] == "10\u201311"
    assert eq_ext.split_tag("x = 1") == ("x = 1", None)


def test_split_tag_refuses_a_tag_that_is_not_a_paper_number():
    import pytest

    with pytest.raises(ValueError, match="paper's equation number"):
        eq_ext.split_tag(r"x \tag{B1}")
    with pytest.raises(ValueError, match="one"):
        eq_ext.split_tag(r"x \tag{1} \\ y \tag{2}")


def test_renumber_gives_the_paper_its_numbers_and_the_book_b1_b2_in_book_order():
    # Sphinx numbered five displays (1)-(5) across two chapters; two are the paper's
    env = SimpleNamespace(
        toc_fignumbers={"b": {"displaymath": {"equation-own3": (5,), "equation-claim": (4,)}},
                        "a": {"displaymath": {"equation-own1": (1,), "equation-mmd": (2,), "equation-own2": (3,)},
                              "exercise": {"ex-a-1": (1,)}}},
        pmi_equation_tags={"a": {"equation-own1": None, "equation-mmd": "7", "equation-own2": None},
                           "b": {"equation-own3": None, "equation-claim": "13"}})
    assert eq_ext.renumber(None, env) == []
    assert env.toc_fignumbers["a"]["displaymath"] == {"equation-own1": ("B1",), "equation-mmd": ("7",),
                                                      "equation-own2": ("B2",)}
    assert env.toc_fignumbers["b"]["displaymath"] == {"equation-own3": ("B3",), "equation-claim": ("13",)}
    assert env.toc_fignumbers["a"]["exercise"] == {"ex-a-1": (1,)}


mj_spec = importlib.util.spec_from_file_location("offline_mathjax", ROOT / "book" / "_ext" / "offline_mathjax.py")
mj_ext = importlib.util.module_from_spec(mj_spec)
mj_spec.loader.exec_module(mj_ext)


def test_offline_mathjax_copies_the_bundles_into_the_static_folder_once(tmp_path, monkeypatch):
    src = tmp_path / "es5"
    (src / "output" / "chtml" / "fonts").mkdir(parents=True)
    (src / mj_ext.BUNDLE).write_text("// mathjax")
    (src / "output" / "chtml" / "fonts" / "tex.js").write_text("// fonts")
    monkeypatch.setenv("MATHJAX3_DIR", str(src))
    dest = tmp_path / "_static" / "mathjax"
    assert mj_ext.install(dest) == dest
    assert (dest / mj_ext.BUNDLE).read_text() == "// mathjax"
    assert (dest / "output" / "chtml" / "fonts" / "tex.js").is_file()
    (src / mj_ext.BUNDLE).write_text("// newer")
    mj_ext.install(dest)  # already there: left alone
    assert (dest / mj_ext.BUNDLE).read_text() == "// mathjax"


def test_offline_mathjax_names_the_fix_when_the_source_is_wrong(tmp_path, monkeypatch):
    import pytest

    monkeypatch.setenv("MATHJAX3_DIR", str(tmp_path))
    with pytest.raises(RuntimeError, match="MATHJAX3_DIR"):
        mj_ext.install(tmp_path / "dest")


def test_the_book_points_mathjax_at_its_own_copy():
    import yaml

    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["sphinx"]["config"]["mathjax_path"] == f"mathjax/{mj_ext.BUNDLE}"
    assert "offline_mathjax" in config["sphinx"]["local_extensions"]
