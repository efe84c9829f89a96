"""Write ``plots/offline.html``: DVC's plots page with Vega, Vega-Lite and Vega-Embed inline.

    python plots/make_offline_template.py DIR   # DIR holds the unpacked npm packages

DVC's own page loads the three libraries from a CDN, so ``dvc plots show`` draws nothing
offline. This template has no ``{scripts}`` placeholder (where DVC would put the CDN tags) and
carries the libraries' minified builds instead, each after its licence; ``.dvc/config`` points
``plots.html_template`` at it. To refresh the libraries (needs the npm registry once):

    npm pack vega@5 vega-lite@5 vega-embed@6 && for f in *.tgz; do mkdir "${f%.tgz}" &&
      tar xzf "$f" -C "${f%.tgz}" --strip-components 1; done
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

LIBRARIES = (
    ("vega", "vega.min.js"),
    ("vega-lite", "vega-lite.min.js"),
    ("vega-embed", "vega-embed.min.js"),
)
OUT = Path(__file__).with_name("offline.html")


def package(root: Path, name: str) -> Path:
    found = sorted(p for p in root.iterdir() if p.is_dir() and p.name.rsplit("-", 1)[0] == name)
    if not found:
        raise SystemExit(f"{root}: no unpacked {name} package (see the docstring)")
    return found[-1]


def main() -> None:
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path.cwd()
    scripts = []
    for name, build in LIBRARIES:
        folder = package(root, name)
        meta = json.loads((folder / "package.json").read_text())
        version = meta["version"]
        notice = folder / "LICENSE"  # vega's npm package ships only the licence's name
        licence = (
            notice.read_text().strip()
            if notice.is_file()
            else f"{meta['license']} licence, {meta.get('homepage', meta.get('repository'))}"
        ).replace("*/", "* /")
        code = (folder / "build" / build).read_text()
        if "</script" in code or "{plot_divs}" in code or "{refresh_tag}" in code:
            raise SystemExit(f"{name}: its build cannot be inlined as is")
        scripts.append(f"<script>/*! {name} {version}\n{licence}\n*/\n{code}\n</script>")
    page = (
        '<!DOCTYPE html>\n<html>\n<head>\n<meta charset="utf-8">\n{refresh_tag}\n'
        "<title>leadscore plots (dvc plots show)</title>\n"
        + "\n".join(scripts)
        + "\n<style>table { border-spacing: 15px; } body { font-family: sans-serif; }</style>\n"
        "</head>\n<body>\n{plot_divs}\n</body>\n</html>\n"
    )
    OUT.write_text(page)
    print(f"{OUT}: {len(page) / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
