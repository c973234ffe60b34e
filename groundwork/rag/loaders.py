"""File loaders: turn Markdown, text, HTML, PDF and DOCX into normalised text with structure.

Each loader produces a list of blocks (headings with a level, and paragraphs); :func:`assemble` joins them
into one normalised text and records every paragraph's heading path and character span, so citations
can point into the document. Parser failures become :class:`~groundwork.errors.DocumentParseError`.
"""

from __future__ import annotations

import io
import logging
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from groundwork.errors import DocumentParseError, UnsupportedFormatError
from groundwork.types import ParsedDocument, Section


@dataclass(frozen=True, slots=True)
class Block:
    """A heading (``level`` >= 1) or a paragraph (``level`` 0)."""

    text: str
    level: int = 0


logging.getLogger("pypdf").setLevel(logging.ERROR)  # we report unreadable PDFs ourselves

_SPACES = re.compile(r"[ \t\u00a0]+")


def _clean(text: str) -> str:
    return _SPACES.sub(" ", text).strip()


def assemble(source: str, blocks: list[Block], media_type: str, title: str | None = None) -> ParsedDocument:
    """Join blocks into a document; the first level-1 heading is the title unless one is given."""
    parts: list[str] = []
    sections: list[Section] = []
    path: list[tuple[int, str]] = []
    offset = 0
    for block in blocks:
        text = _clean(block.text) if block.level else block.text.strip()
        if not text:
            continue
        if block.level:
            if title is None and block.level == 1:
                title = text
            path = [(lvl, h) for lvl, h in path if lvl < block.level] + [(block.level, text)]
        start = offset
        parts.append(text)
        offset += len(text) + 2  # blocks are joined by a blank line
        if not block.level:
            sections.append(Section(tuple(h for _, h in path), text, start, start + len(text)))
    body = "\n\n".join(parts)
    if not sections:
        raise DocumentParseError(f"{source}: no text could be extracted (empty, scanned or image-only?)")
    return ParsedDocument(
        source=source,
        title=title or Path(source).stem.replace("-", " ").replace("_", " ").strip().title(),
        text=body,
        sections=tuple(sections),
        media_type=media_type,
    )


# -- Markdown and plain text -------------------------------------------------------------------------

_ATX = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_SETEXT = re.compile(r"^(=+|-+)\s*$")
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_EMPH = re.compile(r"(\*\*|__|\*|`)")


def _md_inline(text: str) -> str:
    return _EMPH.sub("", _LINK.sub(r"\1", text))


def _lines_to_blocks(lines: list[str], markdown: bool) -> list[Block]:
    blocks: list[Block] = []
    para: list[str] = []
    in_fence = False

    def flush() -> None:
        if para:
            blocks.append(Block("\n".join(para)))
            para.clear()

    for i, raw in enumerate(lines):
        line = raw.rstrip()
        if markdown and line.lstrip().startswith("```"):
            in_fence = not in_fence
            continue
        if in_fence:
            para.append(line)
            continue
        nxt = lines[i + 1].rstrip() if i + 1 < len(lines) else ""
        atx = _ATX.match(line) if markdown else None
        if atx:
            flush()
            blocks.append(Block(_md_inline(atx.group(2)), len(atx.group(1))))
        elif (
            line.strip() and _SETEXT.match(nxt.strip()) and len(nxt.strip()) >= 3 and not _SETEXT.match(line)
        ):
            flush()
            blocks.append(Block(_md_inline(line.strip()), 1 if nxt.strip()[0] == "=" else 2))
        elif _SETEXT.match(line.strip()) and blocks and not para and len(line.strip()) >= 3:
            continue  # the underline of a setext heading
        elif not line.strip():
            flush()
        else:
            para.append(_md_inline(line.strip()) if markdown else line.strip())
    flush()
    return blocks


def load_markdown(data: bytes, source: str) -> ParsedDocument:
    text = _decode(data, source)
    return assemble(source, _lines_to_blocks(text.splitlines(), markdown=True), "text/markdown")


def load_text(data: bytes, source: str) -> ParsedDocument:
    text = _decode(data, source)
    blocks = _lines_to_blocks(text.splitlines(), markdown=False)
    return assemble(source, blocks, "text/plain")


def _decode(data: bytes, source: str) -> str:
    if b"\x00" in data[:4096]:
        raise DocumentParseError(f"{source}: looks like a binary file, not text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")


# -- HTML ------------------------------------------------------------------------------------------

_HTML_BLOCKS = ("h1", "h2", "h3", "h4", "h5", "h6", "p", "li", "pre", "tr", "dt", "dd", "blockquote")
_HTML_CONTAINERS = frozenset(_HTML_BLOCKS[6:])
"""Blocks whose text includes any block nested in them (a <p> inside an <li> is taken with the <li>)."""
_HTML_DROPPED = ("script", "style", "nav", "noscript", "template", "svg")
_NAV_ROLES = frozenset({"navigation", "search"})
_NAV_CLASSES = frozenset({"navheader", "navfooter", "breadcrumb", "breadcrumbs"})
"""Site navigation that repeats on every page of generated documentation: ARIA navigation and search
landmarks (Sphinx marks its related-links bar and sidebar so), DocBook's Prev/Up/Home/Next tables
(``div.navheader``/``div.navfooter``: the PostgreSQL manual, many Linux manuals) and breadcrumb trails.
Embedded, they only add near-identical chunks and noise under each page's last heading."""


def _is_navigation(el: Any) -> bool:
    if el.tag in _HTML_DROPPED:
        return True
    if str(el.get("role", "")).strip().lower() in _NAV_ROLES:
        return True
    return any(c.lower() in _NAV_CLASSES for c in el.get("class", "").split())


def _html_tree(data: bytes, source: str) -> Any:
    """The parsed document (lxml), or ``None`` when it holds nothing to parse.

    The encoding is found as BeautifulSoup finds it (byte-order mark, declared charset, else UTF-8 or
    Windows-1252 by what decodes): libxml2 alone reads an undeclared UTF-8 page as Latin-1. libxml2 stops
    at 2,048 nested elements (unclosed tags pile up so in some generated pages) and would silently drop
    the rest: such a page is refused with an error that says so.
    """
    import lxml.html
    from bs4.dammit import UnicodeDammit
    from lxml import etree

    encoding = UnicodeDammit(data, is_html=True).original_encoding
    parser = lxml.html.HTMLParser(encoding=encoding, huge_tree=True)
    try:
        tree = lxml.html.document_fromstring(data, parser=parser)
    except etree.ParserError:  # "Document is empty": nothing but blanks or comments
        return None
    if any("Excessive depth" in error.message for error in parser.error_log):
        raise DocumentParseError(
            f"{source}: HTML nested more than 2,048 elements deep (unclosed tags?): the parser would lose "
            "the text below that depth"
        )
    return tree


_ASCII_SPACES = " \t\n\r\x0c"
_KEEP_SPACES = frozenset({"pre", "textarea"})


def _strings(el: Any) -> list[str]:
    """The text below ``el`` (comments and processing instructions left out) as BeautifulSoup's
    ``get_text`` gives it: a string of nothing but ASCII blanks, outside ``<pre>``/``<textarea>``,
    becomes one newline if it holds one, else one space (the blank lines and indentation between tags)."""
    strings: list[str] = el.xpath(".//text()")
    keep = el.tag in _KEEP_SPACES or el.find(".//pre") is not None or el.find(".//textarea") is not None
    for i, text in enumerate(strings):
        if not text.strip(_ASCII_SPACES) and not (keep and _in_kept_spaces(text)):
            strings[i] = "\n" if "\n" in text else " "
    return strings


def _in_kept_spaces(text: Any) -> bool:
    """Whether a text node (an lxml "smart string") lies inside ``<pre>`` or ``<textarea>``."""
    parent = text.getparent()
    if text.is_tail:
        parent = parent.getparent()
    while parent is not None:
        if parent.tag in _KEEP_SPACES:
            return True
        parent = parent.getparent()
    return False


def load_html(data: bytes, source: str) -> ParsedDocument:
    """Blocks from an HTML page: headings, paragraphs, list items, preformatted text, table rows (cells
    joined by ``|``), without scripts, styles or site navigation.

    Parsed with lxml (libxml2's HTML parser, C code: the page's text is read in one pass); before, with
    BeautifulSoup's ``html.parser``, parsing was most of an ingestion's CPU besides the embedder.
    """
    tree = _html_tree(data, source)
    if tree is None:
        return assemble(source, [], "text/html")  # raises: no text
    for el in [el for el in tree.iter() if isinstance(el.tag, str) and _is_navigation(el)]:
        el.drop_tree()  # its tail (the text after it) stays
    title_tag = tree.find(".//title")
    title = (_clean("".join(_strings(title_tag))) or None) if title_tag is not None else None
    root = tree.find("body")
    if root is None:
        root = tree
    blocks: list[Block] = []
    for el in root.iter(_HTML_BLOCKS):
        if any(parent.tag in _HTML_CONTAINERS for parent in el.iterancestors()):
            continue  # nested in a block already taken (a <p> inside an <li>, ...)
        name = el.tag
        if name == "tr":
            cells = [_clean(" ".join(_strings(c))) for c in el.iter("td", "th")]
            blocks.append(Block(" | ".join(c for c in cells if c)))
        elif name[0] == "h" and name[1:].isdigit():
            blocks.append(Block("".join(_strings(el)), int(name[1:])))
        else:  # inline tags (<b>, <a>) must not split words: no separator, then normalise spaces
            for br in el.iter("br"):
                br.text = "\n"
            blocks.append(Block(_clean("".join(_strings(el)))))
    if not any(b.level == 0 for b in blocks):  # no block tags: fall back to the visible text
        blocks.append(Block(_clean(" ".join(_strings(root)))))
    return assemble(source, blocks, "text/html", title=title)


# -- PDF -------------------------------------------------------------------------------------------

_BULLET = re.compile(r"^\s*([-•*–]|\d+[.)])\s+")


def load_pdf(data: bytes, source: str) -> ParsedDocument:
    """Text with headings found by font size: lines larger than the body text are headings."""
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    lines: list[tuple[float, str]] = []
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            raise DocumentParseError(f"{source}: the PDF is encrypted")
        for page in reader.pages:
            current: list[tuple[float, str]] = []

            def visit(text: str, cm: Any, tm: Any, font: Any, size: float, into: list[Any] = current) -> None:
                scale = abs(float(tm[0])) if tm is not None and tm[0] else 1.0
                into.append((round(float(size) * scale, 1), text))

            page.extract_text(visitor_text=visit)
            lines.extend(_pdf_lines(current))
    except DocumentParseError:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, OSError, AttributeError) as exc:
        raise DocumentParseError(f"{source}: not a readable PDF ({type(exc).__name__}: {exc})") from exc
    return assemble(source, _pdf_blocks(lines), "application/pdf")


def _pdf_lines(fragments: list[tuple[float, str]]) -> list[tuple[float, str]]:
    out: list[tuple[float, str]] = []
    size, buf = 0.0, ""
    for frag_size, text in fragments:
        for k, piece in enumerate(text.split("\n")):
            if k > 0 and buf.strip():
                out.append((size, buf))
                buf = ""
            if piece.strip():
                size = max(size, frag_size) if buf.strip() else frag_size
            buf += piece
    if buf.strip():
        out.append((size, buf))
    return out


def _pdf_blocks(lines: list[tuple[float, str]]) -> list[Block]:
    if not lines:
        return []
    weights: Counter[float] = Counter()
    for size, text in lines:
        weights[size] += len(text)
    body = weights.most_common(1)[0][0]
    heading_sizes = sorted({s for s, _ in lines if s > body * 1.15}, reverse=True)
    blocks: list[Block] = []
    para: list[str] = []

    def flush() -> None:
        if para:
            blocks.append(Block(" ".join(para)))
            para.clear()

    for size, text in lines:
        if size in heading_sizes and len(text) < 120:
            flush()
            blocks.append(Block(text, heading_sizes.index(size) + 1))
        elif _BULLET.match(text):
            flush()
            para.append(text.strip())
        else:
            para.append(text.strip())
    flush()
    return blocks


# -- DOCX ------------------------------------------------------------------------------------------


def load_docx(data: bytes, source: str) -> ParsedDocument:
    import zipfile

    import docx
    from docx.opc.exceptions import PackageNotFoundError

    try:
        document = docx.Document(io.BytesIO(data))
    except (PackageNotFoundError, zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise DocumentParseError(f"{source}: not a readable DOCX file ({type(exc).__name__})") from exc
    from docx.table import Table

    blocks: list[Block] = []
    for item in document.iter_inner_content():  # paragraphs and tables in document order
        if isinstance(item, Table):
            for row in item.rows:
                blocks.append(Block(" | ".join(_clean(c.text) for c in row.cells if c.text.strip())))
            continue
        style = (item.style.name if item.style is not None else "") or ""
        if style == "Title":
            blocks.append(Block(item.text, 1))
        elif style.startswith("Heading") and style[7:].strip().isdigit():
            blocks.append(Block(item.text, int(style[7:].strip())))
        else:
            blocks.append(Block(item.text))
    title = document.core_properties.title or None
    return assemble(
        source, blocks, "application/vnd.openxmlformats-officedocument.wordprocessingml.document", title=title
    )


Loader = Callable[[bytes, str], ParsedDocument]

LOADERS: dict[str, Loader] = {
    ".md": load_markdown,
    ".markdown": load_markdown,
    ".txt": load_text,
    ".text": load_text,
    ".html": load_html,
    ".htm": load_html,
    ".pdf": load_pdf,
    ".docx": load_docx,
}
"""File suffix -> loader. Register more by adding to this mapping (or pass ``loaders=`` to ingest)."""


def load_bytes(data: bytes, source: str, loaders: dict[str, Loader] | None = None) -> ParsedDocument:
    """Parse ``data`` with the loader for ``source``'s suffix."""
    table = LOADERS if loaders is None else loaders
    suffix = Path(source).suffix.lower()
    loader = table.get(suffix)
    if loader is None:
        raise UnsupportedFormatError(
            f"{source}: unsupported file type {suffix or '(no suffix)'!r}; "
            f"supported: {', '.join(sorted(table))}"
        )
    return loader(data, source)


def load_file(path: Path, loaders: dict[str, Loader] | None = None) -> ParsedDocument:
    """Read and parse a file."""
    return load_bytes(path.read_bytes(), str(path), loaders)
