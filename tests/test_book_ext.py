"""book/_ext/colab_notebooks.py: the theme gets the repository from pmi_tutorial.repository."""

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
