"""report.html: self-contained, readable at phone width, checked in a real browser (headless Chromium)."""

from __future__ import annotations

import base64
import io
import json
import re
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from pipeline.run.html_page import markdown_to_html
from tests.browser import PHONE_WIDTH_PX, chromium_path, probed_dom, screenshot

needs_chromium = pytest.mark.skipif(chromium_path() is None, reason="Chromium is not installed (Debian: apt-get "
                                    "install -y chromium; .ci/run installs it when apt can)")


class _Page(HTMLParser):
    """What the dumped DOM holds: images with their attributes, body attributes, outside references, text."""

    def __init__(self):
        super().__init__()
        self.images, self.body, self.references, self.text = [], {}, [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs)
        if tag == "body":
            self.body = attrs
        for key in ("src", "href"):
            if attrs.get(key) and not attrs[key].startswith("data:"):
                self.references.append(attrs[key])
        if tag in ("script", "iframe", "link", "object", "embed") and "data-probe" not in str(attrs):
            self.references.append(f"<{tag}>")

    def handle_data(self, data):
        self.text.append(data)


def _parse(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    return page


def test_the_page_is_self_contained_and_holds_the_same_figures_as_report_md(finished_run):
    html = (finished_run / "report.html").read_text()
    page = _parse(html)
    assert page.references == []  # no file, URL, script or stylesheet outside the page
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
    figures = json.loads((finished_run / "report.json").read_text())["plots"]["figures"]
    assert [img["alt"] for img in page.images] == [f["title"] for f in figures]
    for img, figure in zip(page.images, figures):
        embedded = base64.b64decode(img["src"].removeprefix("data:image/png;base64,"))
        assert embedded == (finished_run / figure["file"]).read_bytes()
    markdown_headings = re.findall(r"^#+ (.+)$", (finished_run / "report.md").read_text(), re.M)
    assert re.findall(r"<h\d>(.+?)</h\d>", html) == markdown_headings


@needs_chromium
def test_chromium_renders_the_report_without_errors_at_phone_width(finished_run, tmp_path):
    report = json.loads((finished_run / "report.json").read_text())
    page = _parse(probed_dom(finished_run / "report.html", tmp_path))
    assert page.body.get("data-probe-loaded") == "yes", "the load event never came"
    assert json.loads(page.body["data-probe-errors"]) == []
    # tables scroll inside their own box; the page itself is no wider than a phone's window (headless Chromium
    # lays out at no less than 500 px wide even when asked for 390; the screenshot is 390 px)
    window_px = int(page.body["data-probe-window-width"])
    assert PHONE_WIDTH_PX <= window_px <= 500 and int(page.body["data-probe-page-width"]) <= window_px
    assert len(page.images) == len(report["plots"]["figures"]) >= 3
    for img in page.images:  # every figure was decoded by the browser into a real picture
        assert img["data-probe-complete"] == "true" and int(img["data-probe-width"]) > 200
        assert int(img["data-probe-height"]) > 200

    text = " ".join(" ".join(page.text).split())
    lat = report["latency"]
    assert f"measured end to end {lat['measured_original_ms']:.3f} ms {lat['measured_compressed_ms']:.3f} ms " \
           f"{lat['measured_ratio']:.3f}" in text
    assert f"Target ratio {lat['target_ratio']:.3f}" in text
    deployed = report["evaluation"]["deployed"]
    assert f"Deployed network: {deployed}" in text
    agreement = report["evaluation"]["report"][deployed]["top1_agreement"]
    assert f"{deployed} {100 * agreement:.1f}%" in text
    assert f"Dropped blocks ({len(report['selection']['dropped'])} of" in text

    shot = screenshot(finished_run / "report.html", tmp_path / "report-phone.png")
    with Image.open(shot) as image:
        assert image.width == PHONE_WIDTH_PX and len(np.unique(np.asarray(image.convert("L")))) > 10
    print(f"screenshot of report.html at phone width: {shot}")


@needs_chromium
def test_the_probe_sees_a_broken_image(tmp_path):
    """The browser check can fail: an image whose data does not decode is reported with no size."""
    (tmp_path / "fig.png").write_bytes(b"not a png")
    page_file = tmp_path / "page.html"
    page_file.write_text(markdown_to_html("# t\n\n![fig](fig.png)\n", "t", tmp_path))
    img = _parse(probed_dom(page_file, tmp_path)).images[0]
    assert int(img["data-probe-width"]) == 0


def test_markdown_subset_renders_tables_emphasis_and_escapes(tmp_path):
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), "red").save(buffer, format="PNG")
    (tmp_path / "a.png").write_bytes(buffer.getvalue())
    html = markdown_to_html("# R <x>\n\nsome **bold** and `a<b` *it*\n\n| h | k |\n|---|---|\n| 1 | **2** |\n\n"
                            "![A](a.png)\n\n*cap*\n", "R", tmp_path)
    assert "<h1>R &lt;x&gt;</h1>" in html and "<strong>bold</strong>" in html and "<code>a&lt;b</code>" in html
    assert '<div class="table-scroll"><table><thead><tr><th>h</th><th>k</th></tr></thead>' in html
    assert "<td><strong>2</strong></td>" in html and "<figcaption>cap</figcaption>" in html
    assert "<em>it</em>" in html and "---" not in html
