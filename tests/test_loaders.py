"""Behavioural tests for groundwork.rag.loaders: every format, structure, spans and failures."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from groundwork.errors import DocumentParseError, GroundworkError, UnsupportedFormatError
from groundwork.rag import loaders
from groundwork.rag.loaders import Block, assemble, load_bytes, load_file
from groundwork.samples import broken_dir, handbook_dir
from groundwork.types import ParsedDocument

HANDBOOK_FILES = sorted(p for p in handbook_dir().iterdir() if p.is_file())


def _paths(doc: ParsedDocument) -> set[tuple[str, ...]]:
    return {s.heading_path for s in doc.sections}


def _sections_under(doc: ParsedDocument, path: tuple[str, ...]) -> list[str]:
    return [s.text for s in doc.sections if s.heading_path == path]


def _docx_bytes(build) -> bytes:  # type: ignore[no-untyped-def]
    import docx

    document = docx.Document()
    build(document)
    buf = io.BytesIO()
    document.save(buf)
    return buf.getvalue()


# -- the sample handbook ---------------------------------------------------------------------------


def test_handbook_has_every_format() -> None:
    suffixes = {p.suffix for p in HANDBOOK_FILES}
    assert {".md", ".html", ".pdf", ".docx", ".txt"} <= suffixes
    assert len(HANDBOOK_FILES) == 20


@pytest.mark.parametrize("path", HANDBOOK_FILES, ids=lambda p: p.name)
def test_every_handbook_file_loads_with_exact_section_spans(path: Path) -> None:
    doc = load_file(path)
    assert doc.source == str(path)
    assert doc.title.strip()
    assert doc.sections
    assert len(doc.text.split()) > 100  # the sample documents have 200-320 words
    previous_end = -1
    for section in doc.sections:
        assert section.text.strip() == section.text != ""
        assert doc.text[section.start : section.end] == section.text
        assert section.start > previous_end  # in order, not overlapping
        previous_end = section.end
        assert section.heading_path, "every handbook paragraph sits under the document's heading"
        assert section.heading_path[0] == doc.title


@pytest.mark.parametrize(
    ("name", "title", "media_type"),
    [
        ("leave-policy.md", "Leave Policy", "text/markdown"),
        ("acceptable-use-of-it.html", "Acceptable Use of IT", "text/html"),
        ("incident-response.pdf", "Incident Response", "application/pdf"),
        (
            "whistleblowing.docx",
            "Whistleblowing Policy",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        ),
        ("holidays-calendar-2025.txt", "LUMEN FORGE LTD. - HOLIDAYS CALENDAR 2025", "text/plain"),
    ],
)
def test_titles_and_media_types_per_format(name: str, title: str, media_type: str) -> None:
    doc = load_file(handbook_dir() / name)
    assert doc.title == title
    assert doc.media_type == media_type


def test_markdown_headings_form_heading_paths() -> None:
    doc = load_file(handbook_dir() / "leave-policy.md")
    annual = _sections_under(doc, ("Leave Policy", "Annual Leave"))
    assert any("27 days" in t for t in annual)
    sick = _sections_under(doc, ("Leave Policy", "Sick Leave"))
    assert any("15 days of sick leave" in t for t in sick)
    assert not any("27 days" in t for t in sick)
    # headings are in the text but are not paragraphs
    assert "Annual Leave" in doc.text
    assert all(s.text != "Annual Leave" for s in doc.sections)
    # markdown emphasis is removed: "**Primary carers**" -> "Primary carers"
    parental = " ".join(_sections_under(doc, ("Leave Policy", "Parental Leave")))
    assert "Primary carers" in parental
    assert "**" not in doc.text


def test_html_nested_headings_form_heading_paths() -> None:
    doc = load_file(handbook_dir() / "office-locations-and-facilities.html")
    assert ("Office Locations and Facilities", "Our Offices", "Leeds") in _paths(doc)
    assert ("Office Locations and Facilities", "Safety") in _paths(doc)


def test_text_file_setext_headings() -> None:
    doc = load_file(handbook_dir() / "holidays-calendar-2025.txt")
    path = ("LUMEN FORGE LTD. - HOLIDAYS CALENDAR 2025", "BRISTOL AND LEEDS OFFICES (ENGLAND BANK HOLIDAYS)")
    assert any("Boxing Day" in t for t in _sections_under(doc, path))
    assert "=====" not in doc.text and "-----" not in doc.text


def test_pdf_headings_detected_from_font_size_in_handbook() -> None:
    doc = load_file(handbook_dir() / "incident-response.pdf")
    severity = _sections_under(doc, ("Incident Response", "Severity Levels"))
    assert any("SEV1" in t for t in severity)
    assert ("Incident Response", "Personal Data Breaches") in _paths(doc)
    assert all(s.text not in {"Severity Levels", "Incident Response"} for s in doc.sections)


def test_pdf_headings_detected_from_font_size_in_generated_pdf() -> None:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=24)
    pdf.cell(0, 12, "Quarterly Report", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=16)
    pdf.cell(0, 10, "Revenue Figures", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=11)
    body = "Revenue grew steadily across every region this quarter and margins held up well. " * 4
    pdf.multi_cell(0, 6, body)
    pdf.set_font("Helvetica", size=16)
    pdf.cell(0, 10, "Hiring Plans", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=11)
    pdf.multi_cell(0, 6, "We plan to hire twelve engineers before the summer and expand support. " * 3)
    doc = load_bytes(bytes(pdf.output()), "report.pdf")
    assert doc.title == "Quarterly Report"
    revenue = " ".join(_sections_under(doc, ("Quarterly Report", "Revenue Figures")))
    hiring = " ".join(_sections_under(doc, ("Quarterly Report", "Hiring Plans")))
    assert "margins held up" in revenue and "twelve engineers" not in revenue
    assert "twelve engineers" in hiring
    for s in doc.sections:
        assert doc.text[s.start : s.end] == s.text


def test_docx_headings_from_styles_in_handbook() -> None:
    doc = load_file(handbook_dir() / "whistleblowing.docx")
    report = " ".join(_sections_under(doc, ("Whistleblowing Policy", "How to Report")))
    assert "ClearVoice" in report
    assert all(s.text != "How to Report" for s in doc.sections)


def test_docx_headings_from_styles_in_generated_docx() -> None:
    def build(d):  # type: ignore[no-untyped-def]
        d.add_heading("Field Guide", level=1)
        d.add_paragraph("An introduction to the guide.")
        d.add_heading("Birds", level=2)
        d.add_heading("Owls", level=3)
        d.add_paragraph("Owls hunt at night.")
        d.add_heading("Mammals", level=2)
        d.add_paragraph("Foxes are common in towns.")
        d.add_paragraph("")  # empty paragraphs are dropped

    doc = load_bytes(_docx_bytes(build), "guide.docx")
    assert doc.title == "Field Guide"  # no core title property: the Heading 1 is the title
    assert _sections_under(doc, ("Field Guide",)) == ["An introduction to the guide."]
    assert _sections_under(doc, ("Field Guide", "Birds", "Owls")) == ["Owls hunt at night."]
    assert _sections_under(doc, ("Field Guide", "Mammals")) == ["Foxes are common in towns."]
    assert len(doc.sections) == 3


def test_docx_core_title_wins_and_tables_become_rows() -> None:
    def build(d):  # type: ignore[no-untyped-def]
        d.core_properties.title = "Official Title"
        d.add_heading("Heading Text", level=1)
        d.add_paragraph("Body.")
        table = d.add_table(rows=2, cols=3)
        for r, row in enumerate([("Item", "Price", "Owner"), ("Pen", "2", "Ana")]):
            for c, value in enumerate(row):
                table.cell(r, c).text = value

    doc = load_bytes(_docx_bytes(build), "t.docx")
    assert doc.title == "Official Title"
    texts = [s.text for s in doc.sections]
    assert "Item | Price | Owner" in texts
    assert "Pen | 2 | Ana" in texts


def test_docx_table_keeps_its_heading() -> None:
    def build(d):  # type: ignore[no-untyped-def]
        d.add_heading("Doc", level=1)
        d.add_heading("Costs", level=2)
        d.add_paragraph("The table lists costs.")
        table = d.add_table(rows=1, cols=2)
        table.cell(0, 0).text = "Pen"
        table.cell(0, 1).text = "2"
        d.add_heading("Later", level=2)
        d.add_paragraph("Unrelated text.")

    doc = load_bytes(_docx_bytes(build), "t.docx")
    assert "Pen | 2" in _sections_under(doc, ("Doc", "Costs"))


# -- HTML ------------------------------------------------------------------------------------------


def test_html_table_rows_script_and_style() -> None:
    html = b"""<html><head><title>Price List</title><style>p { color: red }</style>
    <script>var secret = "TOKEN123";</script></head><body>
    <h1>Prices</h1>
    <p>Our current prices.</p>
    <table><tr><th>Item</th><th>Price</th><th>Stock</th></tr>
    <tr><td>Pen</td><td>2 EUR</td><td>40</td></tr></table>
    <script>document.write("hidden script text")</script>
    <noscript>enable javascript please</noscript>
    <ul><li>First <b>bullet</b></li><li><p>Second bullet</p></li></ul>
    </body></html>"""
    doc = load_bytes(html, "prices.html")
    assert doc.title == "Price List"  # <title> wins over <h1>
    texts = [s.text for s in doc.sections]
    assert "Item | Price | Stock" in texts
    assert "Pen | 2 EUR | 40" in texts
    assert "First bullet" in texts
    assert texts.count("Second bullet") == 1  # <p> inside <li> is not taken twice
    for banned in ("TOKEN123", "hidden script text", "color", "enable javascript"):
        assert banned not in doc.text
    assert all(s.heading_path == ("Prices",) for s in doc.sections)
    for s in doc.sections:
        assert doc.text[s.start : s.end] == s.text


def test_html_site_navigation_is_not_content() -> None:
    # The shape of a DocBook page (the PostgreSQL manual): Prev/Up/Home/Next tables around the section,
    # plus an ARIA navigation bar (Sphinx) and a breadcrumb trail.
    html = b"""<html><head><title>5.1. Table Basics</title></head><body>
    <div class="navheader"><table summary="Navigation header"><tr><th colspan="5">5.1. Table Basics</th></tr>
    <tr><td><a accesskey="p" href="ddl.html">Prev</a></td><td><a href="ddl.html">Up</a></td>
    <th>Chapter 5. Data Definition</th><td><a href="index.html">Home</a></td><td><a>Next</a></td></tr>
    </table></div>
    <div role="navigation" class="related"><ul><li>modules</li><li>index</li></ul></div>
    <ol class="Breadcrumb"><li>Docs</li><li>Data Definition</li></ol>
    <div class="sect1"><h2>5.1. Table Basics</h2><p>A table is much like a table on paper.</p>
    <table><tr><td>id</td><td>integer</td></tr></table>
    <div class="tip"><h3>Tip</h3><p>See Section 5.6.</p></div></div>
    <div class="navfooter"><table summary="Navigation footer"><tr><td>Prev</td><td>Up</td><td>Next</td></tr>
    <tr><td>Chapter 5. Data Definition</td><td>Home</td><td>5.2. Default Values</td></tr></table></div>
    </body></html>"""
    doc = load_bytes(html, "ddl-basics.html")
    assert [s.text for s in doc.sections] == [
        "A table is much like a table on paper.",
        "id | integer",
        "See Section 5.6.",
    ]
    for banned in ("Prev", "Home", "Default Values", "modules", "Docs"):
        assert banned not in doc.text
    assert doc.title == "5.1. Table Basics"


def test_html_navigation_classes_do_not_match_words_inside_other_classes() -> None:
    html = b"""<body><h1>Guide</h1><div class="navheader-like intro"><p>Kept paragraph.</p></div>
    <div class="content"><p>Body.</p></div></body>"""
    doc = load_bytes(html, "g.html")
    assert [s.text for s in doc.sections] == ["Kept paragraph.", "Body."]


def test_html_without_block_tags_falls_back_to_visible_text() -> None:
    doc = load_bytes(b"<html><body><div>Just   some <span>loose</span> text</div></body></html>", "a.htm")
    assert doc.text == "Just some loose text"
    assert doc.title == "A"  # from the file name


def test_html_title_from_h1_when_no_title_tag() -> None:
    doc = load_bytes(b"<body><h1>Main  Heading</h1><p>Para.</p></body>", "x.html")
    assert doc.title == "Main Heading"


def test_html_empty_title_tag_falls_back_to_h1() -> None:
    doc = load_bytes(b"<html><head><title></title></head><body><h1>Real</h1><p>x</p></body></html>", "f.html")
    assert doc.title == "Real"


def test_html_inline_markup_does_not_split_words() -> None:
    doc = load_bytes(b"<p>un<b>believ</b>able, see <a href='x'>here</a>.</p>", "a.html")
    assert doc.text == "unbelievable, see here."


def test_html_encoding_is_found_without_a_declaration() -> None:
    """libxml2 alone reads an undeclared page as Latin-1; the loader finds UTF-8 (or a declared charset)."""
    utf8 = "<html><body><h1>Café</h1><p>Crème brûlée — €5</p></body></html>".encode()
    assert load_bytes(utf8, "menu.html").text == "Café\n\nCrème brûlée — €5"
    cp1252 = "<html><head><meta charset='windows-1252'></head><body><p>naïve</p></body></html>"
    assert load_bytes(cp1252.encode("cp1252"), "n.html").text == "naïve"


def test_html_blank_text_between_tags_collapses_as_before() -> None:
    """The indentation between tags becomes one newline or space (as BeautifulSoup's ``get_text`` gave it),
    so pages parse to the same text as before the loader moved to lxml."""
    html = b"""<body><h1>Opts</h1><dl><dd><p>
      for an overview.
       </p><p>
        <code>initdb</code> will
        run.
      </p></dd></dl><pre>  a
    b  </pre></body>"""
    doc = load_bytes(html, "opts.html")
    assert doc.text == "Opts\n\nfor an overview.\n \ninitdb will\n run.\n\na\n b"


def test_html_nested_too_deep_is_refused_not_cut() -> None:
    """libxml2 drops what lies below 2,048 nested elements: the page is refused with the reason."""
    deep = b"<body><p>before</p>" + b"<div>" * 3000 + b"<p>deep</p>" + b"</div>" * 3000 + b"</body>"
    with pytest.raises(DocumentParseError, match="nested more than 2,048 elements"):
        load_bytes(deep, "deep.html")
    fine = b"<body>" + b"<div>" * 1500 + b"<p>deep</p>" + b"</div>" * 1500 + b"<p>after</p></body>"
    assert load_bytes(fine, "ok.html").text == "deep\n\nafter"  # past libxml2's default 256


def test_html_mismatched_end_tag_does_not_swallow_the_next_paragraph() -> None:
    doc = load_bytes(
        b"<body><h1>Notes</h1><h5><a href='#x'>(1)</a></h3>\n<p>Done differently.</p></body>", "f.html"
    )
    assert doc.text == "Notes\n\n(1)\n\nDone differently."
    assert [s.heading_path for s in doc.sections] == [("Notes", "(1)")]


# -- Markdown and text -----------------------------------------------------------------------------


def test_markdown_setext_fenced_code_and_links() -> None:
    md = b"""Project Notes
=============

Intro with a [link text](https://example.com/page) and ![alt words](img.png) inline.

Setup
-----

```python
# not a heading
x = 1
```

Final paragraph with **bold** and `code`.
"""
    doc = load_bytes(md, "notes.md")
    assert doc.title == "Project Notes"
    assert _sections_under(doc, ("Project Notes",)) == ["Intro with a link text and alt words inline."]
    setup = _sections_under(doc, ("Project Notes", "Setup"))
    assert any("# not a heading" in t and "x = 1" in t for t in setup)
    assert any("Final paragraph with bold and code." in t for t in setup)
    assert "https://example.com" not in doc.text
    assert "=====" not in doc.text and "-----" not in doc.text
    assert ("Project Notes", "Setup", "not a heading") not in _paths(doc)
    for s in doc.sections:
        assert doc.text[s.start : s.end] == s.text


def test_markdown_atx_nesting_resets_deeper_levels() -> None:
    md = b"# T\n\n## A\n\n### A1\n\ndeep\n\n## B\n\nshallow\n\n# U\n\ntop ###\n"
    doc = load_bytes(md, "n.md")
    assert _sections_under(doc, ("T", "A", "A1")) == ["deep"]
    assert _sections_under(doc, ("T", "B")) == ["shallow"]
    assert _sections_under(doc, ("U",)) == ["top ###"]
    assert doc.title == "T"


def test_plain_text_keeps_markdown_syntax() -> None:
    doc = load_bytes(b"# not a heading\n\nsee [x](y)\n", "plain.txt")
    assert doc.text == "# not a heading\n\nsee [x](y)"
    assert all(s.heading_path == () for s in doc.sections)
    assert doc.title == "Plain"


def test_latin1_text_decodes() -> None:
    doc = load_bytes("Café crème à la carte, señor.".encode("latin-1"), "menu.txt")
    assert "Café crème à la carte, señor." in doc.text


def test_utf8_bom_is_stripped() -> None:
    doc = load_bytes("\ufeff# Título\n\nolá".encode(), "bom.md")
    assert doc.title == "Título"
    assert doc.text.startswith("Título")


def test_assemble_spans_and_title_fallback() -> None:
    blocks = [Block("Intro text."), Block("Part  One", 2), Block("  body  "), Block("   "), Block("More.")]
    doc = assemble("dir/my_file-name.md", blocks, "text/markdown")
    assert doc.title == "My File Name"
    assert doc.text == "Intro text.\n\nPart One\n\nbody\n\nMore."
    assert [s.heading_path for s in doc.sections] == [(), ("Part One",), ("Part One",)]
    for s in doc.sections:
        assert doc.text[s.start : s.end] == s.text


# -- failures --------------------------------------------------------------------------------------


def test_corrupt_pdf_raises_document_parse_error_naming_file() -> None:
    path = broken_dir() / "corrupt.pdf"
    with pytest.raises(DocumentParseError) as info:
        load_file(path)
    assert "corrupt.pdf" in info.value.message
    assert isinstance(info.value, GroundworkError)


def test_unsupported_suffix_raises_naming_suffix() -> None:
    with pytest.raises(UnsupportedFormatError) as info:
        load_file(broken_dir() / "notes.xyz")
    assert ".xyz" in info.value.message
    with pytest.raises(UnsupportedFormatError) as info2:
        load_bytes(b"data", "README")
    assert "no suffix" in info2.value.message


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("empty.md", b""),
        ("blank.md", b"   \n\n\t \n"),
        ("empty.txt", b""),
        ("empty.html", b""),
        ("empty.pdf", b""),
        ("empty.docx", b""),
        ("only-heading.md", b"# Just a heading\n"),
    ],
)
def test_empty_inputs_raise_document_parse_error(name: str, data: bytes) -> None:
    with pytest.raises(DocumentParseError) as info:
        load_bytes(data, name)
    assert name in info.value.message


def test_empty_file_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "empty.md"
    path.write_bytes(b"")
    with pytest.raises(DocumentParseError, match=r"empty\.md"):
        load_file(path)


def test_binary_blob_with_txt_suffix_raises() -> None:
    blob = bytes(range(256)) * 8
    with pytest.raises(DocumentParseError, match="binary"):
        load_bytes(blob, "image.txt")


def test_docx_that_is_not_a_zip_raises() -> None:
    with pytest.raises(DocumentParseError, match=r"report\.docx"):
        load_bytes(b"this is plain text, not a zip archive", "report.docx")


def test_docx_that_is_a_zip_but_not_a_docx_raises() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("hello.txt", "hi")
    with pytest.raises(DocumentParseError, match=r"archive\.docx"):
        load_bytes(buf.getvalue(), "archive.docx")


def test_pdf_of_garbage_raises() -> None:
    with pytest.raises(DocumentParseError, match=r"junk\.pdf"):
        load_bytes(b"not a pdf at all", "junk.pdf")


def test_custom_loader_table() -> None:
    def load_csv(data: bytes, source: str) -> ParsedDocument:
        return assemble(source, [Block(line) for line in data.decode().splitlines()], "text/csv")

    doc = load_bytes(b"a,b\nc,d", "t.CSV", loaders={".csv": load_csv})
    assert doc.media_type == "text/csv"
    assert [s.text for s in doc.sections] == ["a,b", "c,d"]
    with pytest.raises(UnsupportedFormatError):
        load_bytes(b"# x\n\ny", "t.md", loaders={".csv": load_csv})
    assert ".md" in loaders.LOADERS  # the default table is untouched
