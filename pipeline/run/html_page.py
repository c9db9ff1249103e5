"""A self-contained HTML page from the Markdown the reports write (report.html, comparison.html).

Only the subset our reports use is understood: headings, paragraphs, pipe tables, images on their own
line, **bold**, *italic* and `code`. Images are embedded as base64 data URIs, so the page needs no other
file, no network and no script; tables scroll sideways on a phone-width screen instead of overflowing.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; line-height: 1.45; margin: 0 auto;
       max-width: 60rem; padding: 0.75rem; color: #1b1b1b; overflow-wrap: break-word; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.2rem; margin-top: 1.6rem; border-bottom: 1px solid #ddd; }
.table-scroll { overflow-x: auto; -webkit-overflow-scrolling: touch; margin: 0.5rem 0; }
table { border-collapse: collapse; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: left; white-space: nowrap; }
th { background: #f3f3f3; }
code { background: #f3f3f3; padding: 0 0.2rem; overflow-wrap: anywhere; }
figure { margin: 0.75rem 0; } figure img { max-width: 100%; height: auto; display: block; }
figcaption { font-size: 0.9rem; color: #444; }
"""

_IMAGE_LINE = re.compile(r"^!\[(?P<alt>[^\]]*)\]\((?P<src>[^)]+)\)$")
_IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".svg": "image/svg+xml"}


def markdown_to_html(markdown: str, title: str, image_dir: Path) -> str:
    """The whole page: `markdown` rendered, each image read from `image_dir` and embedded."""
    body = "\n".join(_blocks(markdown.splitlines(), Path(image_dir)))
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


def _blocks(lines: list[str], image_dir: Path) -> list[str]:
    out, i = [], 0
    while i < len(lines):
        line = lines[i].strip()
        if not line:
            i += 1
        elif line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            out.append(f"<h{level}>{_inline(line[level:].strip())}</h{level}>")
            i += 1
        elif line.startswith("|"):
            end = _run_end(lines, i, lambda text: text.startswith("|"))
            out.append(_table(lines[i:end]))
            i = end
        elif (image := _IMAGE_LINE.match(line)) is not None:
            out.append(_figure(image, lines, i, image_dir))
            i += 3 if _caption_after(lines, i) else 1
        else:
            end = _run_end(lines, i, lambda text: bool(text) and not text.startswith(("|", "#", "![")))
            out.append("<p>" + " ".join(_inline(text.strip()) for text in lines[i:end]) + "</p>")
            i = end
    return out


def _run_end(lines: list[str], start: int, belongs) -> int:
    end = start + 1
    while end < len(lines) and belongs(lines[end].strip()):
        end += 1
    return end


def _table(rows: list[str]) -> str:
    cells = [[c.strip() for c in row.strip().strip("|").split("|")] for row in rows]
    header, body = cells[0], [r for r in cells[1:] if not all(set(c) <= set("-: ") for c in r)]
    head = "".join(f"<th>{_inline(c)}</th>" for c in header)
    rows_html = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in body)
    return f'<div class="table-scroll"><table><thead><tr>{head}</tr></thead><tbody>{rows_html}</tbody></table></div>'


def _caption_after(lines: list[str], i: int) -> bool:
    """A figure's caption is the italic line after one blank line (as plots.markdown_section writes it)."""
    return i + 2 < len(lines) and not lines[i + 1].strip() and bool(re.fullmatch(r"\*[^*].*\*", lines[i + 2].strip()))


def _figure(match: re.Match, lines: list[str], i: int, image_dir: Path) -> str:
    path = image_dir / match["src"]
    mime = _IMAGE_TYPES.get(path.suffix.lower(), "application/octet-stream")
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    caption = _inline(lines[i + 2].strip()[1:-1]) if _caption_after(lines, i) else _inline(match["alt"])
    return (f'<figure><img src="data:{mime};base64,{data}" alt="{html.escape(match["alt"])}">'
            f"<figcaption>{caption}</figcaption></figure>")


def _inline(text: str) -> str:
    """Escape, then code spans, bold and italic (code first, so its content is left alone)."""
    parts = re.split(r"(`[^`]*`)", text)
    rendered = []
    for part in parts:
        if part.startswith("`") and part.endswith("`") and len(part) > 1:
            rendered.append(f"<code>{html.escape(part[1:-1])}</code>")
            continue
        part = html.escape(part)
        part = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", part)
        rendered.append(re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"<em>\1</em>", part))
    return "".join(rendered)
