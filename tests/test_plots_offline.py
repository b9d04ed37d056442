"""`dvc plots show/diff` write a page that renders with no network: vega, vega-lite and vega-embed inlined.

The page is plots_template/offline.html (plots_template/build.py writes it from the pinned npm packages);
.dvc/config names it as DVC's `plots.html_template`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from dvc.config import Config

from tests.conftest import commit_all, sh
from tests.test_explorer import CHROMIUM, CHROMIUM_ARGS

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE_DIR = ROOT / "plots_template"
TEMPLATE = TEMPLATE_DIR / "offline.html"
LIBRARIES = ["vega", "vega-lite", "vega-embed"]

PLOTS = """\
plots:
  - loss:
      x: epoch
      y:
        history.csv: [train_loss, val_loss]
      y_label: loss
  - validation accuracy:
      x: epoch
      y:
        history.csv: val_accuracy
  - test confusion:
      template: confusion
      x: actual
      y:
        confusion.csv: predicted
"""


def pins() -> dict[str, str]:
    return json.loads((TEMPLATE_DIR / "package.json").read_text())["dependencies"]


def test_template_is_self_contained() -> None:
    html = TEMPLATE.read_text(encoding="utf-8")
    assert "{plot_divs}" in html  # where DVC puts the plots
    assert "{scripts}" not in html  # where DVC would put its CDN <script> tags
    assert '<meta charset="utf-8">' in html  # the libraries hold non-ASCII text
    assert not re.search(r"<script[^>]*\bsrc\s*=", html, re.I), "the page loads a script"
    assert not re.search(r"""\b(src|href)\s*=\s*["']?(https?:)?//""", html, re.I), (
        "the page fetches something"
    )
    assert "<link" not in html
    for name, version in pins().items():
        assert f"<script>/* {name} {version} " in html


def test_dvc_config_names_the_template() -> None:
    setting = Config(dvc_dir=str(ROOT / ".dvc"), validate=False).load_one("repo")["plots"]["html_template"]
    assert (ROOT / ".dvc" / setting).resolve() == TEMPLATE  # DVC reads a relative path from .dvc/


def test_lock_pins_the_majors_dvc_render_loads() -> None:
    """The majors of dvc-render's own CDN tags, exact versions, each with npm's integrity hash."""
    from dvc_render.vega import VegaRenderer

    cdn = dict(re.findall(r"/npm/([a-z-]+)@(\d+)\.", VegaRenderer.SCRIPTS))
    assert sorted(cdn) == sorted(LIBRARIES) == sorted(pins())
    lock = json.loads((TEMPLATE_DIR / "package-lock.json").read_text())["packages"]
    for name, version in pins().items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"{name} {version} is not an exact version"
        assert version.split(".")[0] == cdn[name]
        assert lock[f"node_modules/{name}"]["version"] == version
        assert lock[f"node_modules/{name}"]["integrity"].startswith("sha512-")


def test_template_is_the_build_of_the_locked_packages() -> None:
    if not (TEMPLATE_DIR / "node_modules").is_dir():
        pytest.skip("plots_template/node_modules is missing: `make install` runs npm ci")
    from plots_template import build

    assert build.page() == TEMPLATE.read_text(encoding="utf-8"), "run `make install` to rebuild the template"


def browser_or_skip() -> None:
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} not found: apt-get install chromium"
        if os.environ.get("TUNINGLAB_REQUIRE_BROWSER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)


def write_results(repo: Path, epochs: int, shift: float) -> None:
    history = ["epoch,train_loss,val_loss,val_accuracy"]
    history += [
        f"{e},{1 / e + shift:.3f},{1.2 / e + shift:.3f},{0.5 + e / 20 - shift:.3f}"
        for e in range(1, epochs + 1)
    ]
    (repo / "history.csv").write_text("\n".join(history) + "\n")
    pairs = [(a, p) for a in range(3) for p in range(3) for _ in range(4 if a == p else 1)]
    (repo / "confusion.csv").write_text("actual,predicted\n" + "".join(f"{a},{p}\n" for a, p in pairs))


@pytest.fixture(scope="module")
def plot_pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A small DVC project with this repository's .dvc/config and template: `dvc plots show` and `diff`."""
    browser_or_skip()
    repo = tmp_path_factory.mktemp("plots")
    sh(repo, "git", "init", "-q", "-b", "main")
    sh(repo, "dvc", "init", "-q")
    shutil.copy2(ROOT / ".dvc" / "config", repo / ".dvc" / "config")
    (repo / "plots_template").mkdir()
    shutil.copy2(TEMPLATE, repo / "plots_template" / TEMPLATE.name)
    (repo / "dvc.yaml").write_text(PLOTS)
    write_results(repo, epochs=8, shift=0.0)
    commit_all(repo, "baseline")
    write_results(repo, epochs=12, shift=0.1)  # the workspace: another run
    sh(repo, "dvc", "plots", "show", "-o", "shown")
    sh(repo, "dvc", "plots", "diff", "HEAD", "-o", "diffed")
    return {"show": repo / "shown" / "index.html", "diff": repo / "diffed" / "index.html"}


def render(page_file: Path, screenshot: Path | None = None) -> dict[str, Any]:
    """Open the page in headless Chromium with every http(s) request refused; what it drew and fetched."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    requests: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("console", lambda message: message.type == "error" and errors.append(message.text))
            page.on("request", lambda request: requests.append(request.url))
            page.route(re.compile(r"^(https?|wss?|ftp):", re.I), lambda route: route.abort())
            page.goto(page_file.as_uri())
            drawn = "div => div.querySelector('svg, canvas') !== null"
            with contextlib.suppress(PlaywrightTimeout):  # reported below, plot by plot
                page.wait_for_function(
                    f"[...document.querySelectorAll('body > div[id]')].every({drawn})", timeout=15_000
                )
            plots = page.eval_on_selector_all(
                "body > div[id]", f"divs => Object.fromEntries(divs.map(div => [div.id, ({drawn})(div)]))"
            )
            if screenshot:
                page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    return {"plots": plots, "errors": errors, "requests": requests}


@pytest.mark.parametrize("command", ["show", "diff"])
def test_plots_render_offline(plot_pages: dict[str, Path], command: str) -> None:
    page_file = plot_pages[command]
    assert "cdn.jsdelivr" not in page_file.read_text(encoding="utf-8")
    shown = render(page_file)
    assert shown["plots"] == {"loss": True, "validation_accuracy": True, "test_confusion": True}
    assert shown["errors"] == []
    assert [url for url in shown["requests"] if not url.startswith(("file:", "data:", "blob:"))] == []
