"""An executed notebook as one HTML page the dashboard can show: nbconvert's JupyterLab look,
figures embedded, and nothing in it that runs or fetches.

Students' outputs and markdown pass through a sanitizer that keeps what documents need
(headings, tables, lists, links, embedded images) and drops scripts, event handlers,
iframes, forms and images from elsewhere; the page itself (templates/labtrain) carries no
JavaScript and a Content-Security-Policy that forbids scripts and outside requests. The API
serves it sandboxed besides (service/api/jobs.py), so even a sanitizer miss cannot run.

The job never renders its own page: once its processes are gone, the worker runs
`python -m labtrain_job.render NOTEBOOK PAGE` in a short sandbox of its own, with the executed
notebook as its only input (workers/trainers/code/notebook_page.py).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import bleach
import nbformat
from bleach.css_sanitizer import CSSSanitizer
from nbconvert import HTMLExporter

TEMPLATES = Path(__file__).with_name("templates")
TAGS = frozenset(
    {
        *bleach.ALLOWED_TAGS,
        *("p", "br", "hr", "div", "span", "pre", "img", "h1", "h2", "h3", "h4", "h5", "h6"),
        *("table", "thead", "tbody", "tfoot", "tr", "td", "th", "caption", "colgroup", "col"),
        *("sub", "sup", "del", "s", "u", "small", "mark", "kbd", "samp", "var", "q", "dl", "dt", "dd"),
        *("details", "summary", "figure", "figcaption"),
    }
)
PLAIN_ATTRIBUTES = frozenset({"class", "id", "title", "style", "align", "colspan", "rowspan", "alt", "width", "height"})
_css = CSSSanitizer()


def _attribute_allowed(tag: str, name: str, value: str) -> bool:
    if name in PLAIN_ATTRIBUTES:
        return True
    if tag == "a" and name == "href":
        return value.startswith(("http://", "https://", "mailto:", "#"))
    if tag == "img" and name == "src":  # only pictures carried in the page: nothing is fetched
        return value.startswith("data:image/")
    return False


def clean_html(element: Any) -> str:
    text = element.decode() if isinstance(element, bytes) else str(element)
    return bleach.clean(
        text,
        tags=TAGS,
        attributes=_attribute_allowed,
        protocols=["http", "https", "mailto", "data"],
        css_sanitizer=_css,
        strip=True,
        strip_comments=True,
    )


def notebook_html(notebook: Any) -> str:
    exporter = HTMLExporter(
        template_name="labtrain",
        extra_template_basedirs=[str(TEMPLATES)],
        sanitize_html=True,
        embed_images=True,
        filters={"clean_html": clean_html},
    )
    html, _ = exporter.from_notebook_node(notebook)
    return html


def main(argv: list[str] | None = None) -> int:
    source, target = argv if argv is not None else sys.argv[1:]
    notebook = nbformat.read(source, as_version=4)
    Path(target).write_text(notebook_html(notebook), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
