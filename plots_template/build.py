"""Write offline.html: the page `dvc plots show/diff` fills, with vega, vega-lite and vega-embed inlined.

DVC's default page loads those three libraries from a CDN, so offline it stays blank. This one carries
the builds that package.json pins (read from node_modules, which `npm ci` fills from package-lock.json),
so it needs no network. `.dvc/config` points `plots.html_template` at it; `make install` runs:

    npm ci --prefix plots_template --ignore-scripts && python3 plots_template/build.py

DVC replaces `{plot_divs}` and `{refresh_tag}` in the page. There is deliberately no `{scripts}`: DVC
would put its CDN <script> tags there. offline.html is committed too, since DVC fails on a missing
template; the same lock rebuilds it byte for byte (tests/test_plots_offline.py checks).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "offline.html"
LIBRARIES = ["vega", "vega-lite", "vega-embed"]  # in load order: vega-embed needs the other two

PAGE = """<!DOCTYPE html>
<html>
<head>
    <meta charset="utf-8">
    {refresh_tag}
    <title>DVC Plot</title>
    <!-- Written by plots_template/build.py from the npm packages it names; no network needed. -->
SCRIPTS
    <style>
        table {
            border-spacing: 15px;
        }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def library_script(name: str) -> str:
    """One library's browser build as an inline <script>, checked against package.json's pin."""
    package = HERE / "node_modules" / name
    if not (package / "package.json").is_file():
        raise SystemExit(f"{package} is missing: run `npm ci` in {HERE} first")
    meta = json.loads((package / "package.json").read_text(encoding="utf-8"))
    pinned = json.loads((HERE / "package.json").read_text(encoding="utf-8"))["dependencies"][name]
    if meta["version"] != pinned:
        raise SystemExit(
            f"node_modules has {name} {meta['version']}, package.json pins {pinned}: run `npm ci`"
        )
    code = (package / meta["jsdelivr"]).read_text(encoding="utf-8")  # the file the CDN serves
    code = re.sub(r"\n//# sourceMappingURL=\S+\s*$", "\n", code)  # no .map file next to the page
    if re.search(r"</script|<!--", code, re.I):
        raise SystemExit(f"{name}'s build would end the inline <script> early")
    return f"    <script>/* {name} {meta['version']} ({meta['license']}) */\n{code.strip()}\n    </script>"


def page() -> str:
    """The template's text, from node_modules."""
    return PAGE.replace("SCRIPTS", "\n".join(library_script(name) for name in LIBRARIES))


def main() -> None:
    text = page()
    temporary = OUTPUT.with_suffix(".tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(OUTPUT)  # never a half-written template
    print(f"wrote {OUTPUT.relative_to(HERE.parent)} ({len(text) // 1024} KiB)")


if __name__ == "__main__":
    main()
