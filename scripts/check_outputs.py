"""Check the executed reader notebooks: ``python scripts/check_outputs.py [_build/reader_notebooks]``.

``make nbval`` leaves every executed notebook there (``scripts/nbval_outputs.py``), with the
outputs the book build then shows.  Problems, each listed; exit status 1 when there is any:

* an error output, or any text on stderr (warnings go there);
* warning text in any output (``UserWarning:``, ``DeprecationWarning:``... also when a cell
  printed it);
* a figure (an ``image/png`` output) in a cell without a caption (``mystnb.figure.caption``)
  or without alt text (``mystnb.image.alt``);
* a PNG below 150 dpi: its pixel width over its display width (``metadata.width``, CSS pixels
  at 96 per inch; without one, 1 pixel per CSS pixel) times 96.
* a chapter without its executed notebook (``--expect N`` notebooks at least).
"""

from __future__ import annotations

import argparse
import base64
import re
import struct
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
_WARNING = re.compile(r"\b[A-Z]\w*Warning\b:|^Warning:", re.M)
MIN_DPI = 150


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) of a PNG from its IHDR chunk."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    return struct.unpack(">II", data[16:24])


def _text(output) -> str:
    if output.get("output_type") == "stream":
        return output.get("text", "")
    data = output.get("data", {})
    return "\n".join(str(data[k]) for k in ("text/plain", "text/markdown", "text/html") if k in data)


def check_notebook(nb, name: str) -> list[str]:
    problems = []
    k = -1
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        k += 1
        where = f"{name}: code cell {k}"
        meta = cell.get("metadata", {}).get("mystnb", {}) or {}
        for out in cell.get("outputs", []):
            kind = out.get("output_type")
            if kind == "error":
                problems.append(f"{where}: error {out.get('ename')}: {out.get('evalue', '')[:80]}")
                continue
            if kind == "stream" and out.get("name") == "stderr":
                problems.append(f"{where}: stderr output: {out.get('text', '').strip()[:100]!r}")
                continue
            m = _WARNING.search(_text(out))
            if m:
                line = _text(out)[m.start():].split("\n", 1)[0]
                problems.append(f"{where}: warning in the output: {line[:100]!r}")
            png = out.get("data", {}).get("image/png")
            if png is None:
                continue
            if not (meta.get("figure") or {}).get("caption"):
                problems.append(f"{where}: a figure without caption (set mystnb.figure.caption)")
            if not (meta.get("image") or {}).get("alt"):
                problems.append(f"{where}: a figure without alt text (set mystnb.image.alt)")
            width_px, _ = png_size(base64.b64decode(png))
            shown = float((out.get("metadata", {}).get("image/png") or {}).get("width") or width_px)
            dpi = width_px / shown * 96
            if dpi < MIN_DPI:
                problems.append(f"{where}: figure at {dpi:.0f} dpi, below {MIN_DPI} (plotting.set_style() gives retina PNGs)")
    return problems


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folder", nargs="?", type=Path, default=ROOT / "_build" / "reader_notebooks")
    ap.add_argument("--expect", type=int, default=0, help="at least this many notebooks")
    args = ap.parse_args(argv)
    paths = sorted(args.folder.glob("*.ipynb"))
    problems = []
    if len(paths) < max(args.expect, 1):
        problems.append(f"{args.folder}: {len(paths)} executed notebook(s), expected {max(args.expect, 1)}; "
                        "run `make nbval` (a notebook with a failing cell is not written)")
    for path in paths:
        problems += check_notebook(nbformat.read(path, as_version=4), path.name)
    if problems:
        print(f"check_outputs: {len(problems)} problem(s):")
        for p in problems:
            print(f"  {p}")
        return 1
    print(f"check_outputs: {len(paths)} executed notebook(s): no errors, stderr or warnings; "
          f"every figure captioned, with alt text, >= {MIN_DPI} dpi")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
