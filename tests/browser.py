"""Render a page the tool writes in headless Chromium and measure what a reader would see: the images, the requests,
tables wider than their box, and a screenshot. tests/test_pages_in_browser.py asserts on `render`'s result; the
screenshots in docs/ are written by the same function:

    python tests/browser.py ROOT/report.html docs/report-screenshot.png

Nothing may leave the machine: Chromium runs with a proxy on a closed port (127.0.0.1:9, the discard port) and a
host resolver that fails every name, so a page that asks for a remote file gets a failed request rather than a slow
or flaky one, and the Performance API's resource list still names it (`remote` below).
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

WIDTH, HEIGHT = 1280, 900
SHOT_MAX_HEIGHT = 2600  # the screenshots in docs/: the top of the page, about three screens
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"

#: What the page holds, read in the page itself after every image has loaded or failed.
_PROBE = """
const imgs = Array.from(document.images).map(i => ({src: i.currentSrc.slice(0, 80), complete: i.complete,
    width: i.naturalWidth, height: i.naturalHeight}));
const sources = Array.from(document.querySelectorAll('img[src], script[src], link[href], iframe[src], source[src]'))
    .map(e => e.getAttribute('src') || e.getAttribute('href'));
const resources = performance.getEntriesByType('resource').map(r => r.name);
const describe = e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + ' "' +
    e.textContent.trim().replace(/\\s+/g, ' ').slice(0, 60) + '"';
const overflows = [];
for (const table of document.querySelectorAll('table')) {
    // a table inside a box that scrolls sideways may be wider than the box: the reader can scroll it
    let scroller = table.parentElement;
    while (scroller && !['auto', 'scroll'].includes(getComputedStyle(scroller).overflowX))
        scroller = scroller.parentElement;
    const box = table.parentElement.getBoundingClientRect(), right = table.getBoundingClientRect().right;
    if ((!scroller || scroller === document.documentElement || scroller === document.body) && right > box.right + 1)
        overflows.push('table ' + describe(table.rows[0] || table) + ' ends at ' + Math.round(right) +
            ' px, its box at ' + Math.round(box.right));
    for (const cell of table.querySelectorAll('th, td'))
        if (cell.scrollWidth > cell.clientWidth + 1)
            overflows.push(describe(cell) + ' is ' + cell.scrollWidth + ' px wide in a ' + cell.clientWidth +
                ' px cell');
}
for (const block of document.querySelectorAll('p, nav, h1, h2, h3, h4, li, caption, figcaption'))
    if (block.scrollWidth > block.clientWidth + 1)
        overflows.push(describe(block) + ' is ' + block.scrollWidth + ' px wide in a ' + block.clientWidth + ' px box');
return {imgs, sources, resources, overflows, title: document.title};
"""


@dataclass
class Rendered:
    """One page as Chromium drew it at WIDTH × HEIGHT."""

    images: list[dict[str, Any]] = field(repr=False)
    sources: list[str]
    resources: list[str]
    overflows: list[str]
    title: str
    screenshot: bytes = field(repr=False)
    console: list[str] = field(default_factory=list)

    @property
    def broken_images(self) -> list[str]:
        return [i["src"] for i in self.images if not i["complete"] or not i["width"] or not i["height"]]

    @property
    def remote(self) -> list[str]:
        """Every URL the page named or fetched that is not a data: URI or a file beside it."""
        named = [s for s in self.sources  # a scheme (http:, https:, ...) or a protocol-relative //host
                 if s and not s.startswith(("data:", "#")) and (":" in s.split("/")[0] or s.startswith("//"))]
        fetched = [r for r in self.resources if not r.startswith(("data:", "file:"))]
        refused = [line for line in self.console if "net::ERR_" in line]  # the proxy's refusals, CSS url()s too
        return named + fetched + refused


def _find(path: str) -> str | None:
    """Debian's path, else the same name on PATH."""
    return path if Path(path).exists() else shutil.which(Path(path).name)


def missing() -> str | None:
    """Why no browser can be started here, or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not _find(path):
            return f"{path} not found (apt-get install chromium chromium-driver)"
    return None


def start() -> Any:
    """A headless Chromium that can reach nothing but local files. The chromedriver is named, so Selenium Manager
    never looks for (or downloads) one."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = _find(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={WIDTH},{HEIGHT}", "--hide-scrollbars", "--force-device-scale-factor=1",
                "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
                "--host-resolver-rules=MAP * ~NOTFOUND", "--no-first-run", "--disable-extensions",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(_find(CHROMEDRIVER)))
    driver.set_page_load_timeout(30)
    return driver


def render(driver: Any, page: Path, full_page: bool = False) -> Rendered:
    """Load `page` (a file), wait for its images, measure it and take a screenshot: the first screen, or with
    `full_page` the page down to its end or SHOT_MAX_HEIGHT (docs/)."""
    driver.set_window_size(WIDTH, HEIGHT)
    driver.get(Path(page).resolve().as_uri())
    driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "Promise.all(Array.from(document.images).map(i => i.decode().catch(() => null))).then(() => done());")
    probe = driver.execute_script(_PROBE)
    if full_page:
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(WIDTH, min(height, SHOT_MAX_HEIGHT))
    shot = driver.get_screenshot_as_png()
    driver.set_window_size(WIDTH, HEIGHT)
    console = [f"{e['level']}: {e['message']}" for e in driver.get_log("browser")]
    return Rendered(images=probe["imgs"], sources=probe["sources"], resources=probe["resources"],
                    overflows=probe["overflows"], title=probe["title"], screenshot=shot, console=console)


def ink(png: bytes) -> tuple[int, float]:
    """(colours, share of pixels that are not the most common colour) of a screenshot."""
    import io

    import numpy as np
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).reshape(-1, 3)
    _, counts = np.unique(pixels, axis=0, return_counts=True)
    return len(counts), 1 - counts.max() / counts.sum()


def main(argv: list[str]) -> int:
    """python tests/browser.py PAGE PNG [PAGE PNG ...]: full-page screenshots through `render`."""
    if not argv or len(argv) % 2:
        print(main.__doc__, file=sys.stderr)
        return 2
    if why := missing():
        print(why, file=sys.stderr)
        return 2
    driver = start()
    try:
        for page, png in zip(argv[::2], argv[1::2], strict=True):
            shown = render(driver, Path(page), full_page=True)
            Path(png).write_bytes(shown.screenshot)
            print(f"{png}: {len(shown.images)} images, {len(shown.overflows)} overflows, remote {shown.remote}")
    finally:
        driver.quit()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
