"""Headless Chromium for looking at a report the way a person would: a screenshot and the DOM.

A test helper, not part of the package (``from tests import chromium``: the pytest config puts
the repo root on the path), handy by hand too: ``screenshot(html_file, png)``,
``dump_dom(html_file)`` and ``measure_svg(svg)`` (where each text of a plot landed) run Debian's
``chromium`` (``apt-get install chromium``) with no sandbox, no GPU and no network of its own, in
a throw-away profile.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)
NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find() -> str | None:
    return next((path for name in NAMES if (path := shutil.which(name))), None)


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    binary = find()
    if binary is None:
        raise FileNotFoundError("no chromium: `apt-get install chromium`")
    with tempfile.TemporaryDirectory(prefix="gpubox-chromium-") as profile:
        return subprocess.run(
            [binary, *FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )


def screenshot(
    page: str | Path, png: str | Path, size: str = "1280,2000", timeout: float = 120
) -> Path:
    png = Path(png).absolute()
    result = _run(
        [f"--screenshot={png}", f"--window-size={size}", Path(page).absolute().as_uri()], timeout
    )
    if not png.is_file():
        raise RuntimeError(f"chromium wrote no screenshot: {result.stderr[-800:]}")
    return png


# Appended to a copy of the page by dump_dom(measure_images=True): once the page has loaded,
# each image carries the width Chromium decoded it at (0: it did not render).
_MEASURE = (
    '<script>window.addEventListener("load",()=>{for(const i of document.images)'
    '{i.setAttribute("data-natural-width",i.naturalWidth)}'
    'document.body.setAttribute("data-loaded","yes")})</script>'
)


def dump_dom(page: str | Path, timeout: float = 120, measure_images: bool = False) -> str:
    """The DOM after the page loaded, serialised as HTML. ``measure_images``: load a copy of
    the page that records every image's decoded width as ``data-natural-width``."""
    page = Path(page).absolute()
    if not measure_images:
        result = _run(["--dump-dom", page.as_uri()], timeout)
    else:
        with tempfile.TemporaryDirectory(prefix="gpubox-dom-") as folder:
            copy = Path(folder) / page.name
            copy.write_text(page.read_text().replace("</body>", _MEASURE + "</body>"))
            result = _run(["--virtual-time-budget=5000", "--dump-dom", copy.as_uri()], timeout)
    if "<html" not in result.stdout:
        raise RuntimeError(f"chromium dumped no DOM: {result.stderr[-800:]}")
    return result.stdout


# Appended to a page by measure_svg(): once loaded, every SVG <text> carries its bounding box.
_BBOXES = (
    '<script>window.addEventListener("load",()=>{for(const t of document.querySelectorAll('
    '"svg text")){const b=t.getBBox();t.setAttribute("data-bbox",[b.x,b.y,b.width,b.height]'
    '.join(","))}document.body.setAttribute("data-loaded","yes")})</script>'
)


def measure_svg(svg: str, timeout: float = 120) -> dict:
    """Lay ``svg`` out in Chromium (inline in a page) and return its size and where each of its
    texts landed: ``{"width", "height", "texts": [{"text", "x", "y", "width", "height"}]}``,
    in the SVG's own units. A text drawn past the edges would be clipped in the picture."""
    with tempfile.TemporaryDirectory(prefix="gpubox-svg-") as folder:
        page = Path(folder) / "svg.html"
        page.write_text(f'<!DOCTYPE html><html><body style="margin:0">{svg}{_BBOXES}</body></html>')
        result = _run(["--virtual-time-budget=5000", "--dump-dom", page.as_uri()], timeout)
    if "<html" not in result.stdout:
        raise RuntimeError(f"chromium dumped no DOM: {result.stderr[-800:]}")
    dom = parse(result.stdout)
    if dom.find_all("body")[0].attrs.get("data-loaded") != "yes":
        raise RuntimeError("chromium did not finish laying out the SVG")
    root = dom.find_all("svg")[0]
    texts = []
    for element in root.find_all("text"):
        x, y, w, h = (float(v) for v in element.attrs["data-bbox"].split(","))
        texts.append({"text": element.text(), "x": x, "y": y, "width": w, "height": h})
    return {
        "width": float(root.attrs["width"]),
        "height": float(root.attrs["height"]),
        "texts": texts,
    }


# ---- a small DOM to assert on (stdlib html.parser) ------------------------------------------

_VOID = {
    "area",
    "base",
    "br",
    "col",
    "embed",
    "hr",
    "img",
    "input",
    "link",
    "meta",
    "source",
    "wbr",
}


class Element:
    """One element: ``tag``, ``attrs``, ``children``, ``text()``; :meth:`find_all` by tag, id,
    class or attribute."""

    def __init__(self, tag: str, attrs: dict[str, str], parent: Element | None = None):
        self.tag, self.attrs, self.parent = tag, attrs, parent
        self.children: list[Element | str] = []

    @property
    def id(self) -> str | None:
        return self.attrs.get("id")

    @property
    def classes(self) -> list[str]:
        return (self.attrs.get("class") or "").split()

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def iter(self):
        yield self
        for child in self.children:
            if isinstance(child, Element):
                yield from child.iter()

    def find_all(self, tag: str | None = None, cls: str | None = None, **attrs) -> list[Element]:
        return [
            e
            for e in self.iter()
            if (tag is None or e.tag == tag)
            and (cls is None or cls in e.classes)
            and all(e.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items())
        ]

    def by_id(self, element_id: str) -> Element:
        found = self.find_all(id=element_id)
        if len(found) != 1:
            raise KeyError(f"{len(found)} elements with id {element_id!r}")
        return found[0]


def parse(text: str) -> Element:
    from html.parser import HTMLParser

    root = Element("#document", {})

    class Builder(HTMLParser):
        current = root

        def handle_starttag(self, tag, attrs):
            element = Element(tag, {k: v or "" for k, v in attrs}, self.current)
            self.current.children.append(element)
            if tag not in _VOID:
                self.current = element

        def handle_startendtag(self, tag, attrs):
            self.current.children.append(Element(tag, {k: v or "" for k, v in attrs}, self.current))

        def handle_endtag(self, tag):
            node = self.current
            while node is not None and node.tag != tag:
                node = node.parent
            if node is not None and node.parent is not None:
                self.current = node.parent

        def handle_data(self, data):
            self.current.children.append(data)

    Builder(convert_charrefs=True).feed(text)
    return root
