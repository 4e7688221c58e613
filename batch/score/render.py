"""MusicXML bytes, SVG pages (Verovio), a multi-page PDF (cairosvg) and a one-line SVG.

Verovio ships its music font and draws noteheads, clefs and rests as SVG paths, so no
font is fetched (it works offline). Only the metronome mark's note symbol is SMuFL text
with an embedded web font, which cairo cannot use; for the PDF it becomes the Unicode
note in DejaVu Sans. cairosvg draws one SVG per surface, so each page is drawn onto one
shared cairo PDF surface, the page size set before drawing and ``show_page`` after.
"""
from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET
from importlib.resources import files

import cairocffi
import cairosvg.parser
import cairosvg.surface
import verovio
from music21 import stream
from music21.musicxml.m21ToXml import ScoreExporter

from batch.score.notation import add_drum_kit, place_directions

VEROVIO_DATA = str(files("verovio") / "data")
A4_POINTS = (595.28, 841.89)
PAGE = {"pageWidth": 2100, "pageHeight": 2970, "pageMarginTop": 100, "pageMarginBottom": 100,
        "pageMarginLeft": 100, "pageMarginRight": 100, "scale": 45, "footer": "none",
        "spacingSystem": 12, "leftMarginRest": 2.0}  # A4 in tenths of a millimetre; rests clear of flags
SYSTEM = {"breaks": "none", "adjustPageWidth": True, "adjustPageHeight": True, "scale": 40,
          "header": "none", "footer": "none", "pageMarginTop": 20, "pageMarginBottom": 20,
          "pageMarginLeft": 20, "pageMarginRight": 20}
# SMuFL metronome glyphs (private use area) -> Unicode music symbols any text font has.
SMUFL_TEXT = {"\ueca5": "\u2669", "\ueca7": "\u266a", "\uecb7": "."}
SMUFL_SPAN = re.compile(r'<tspan font-family="Leipzig" font-size="(\d+)px">([^<]*)</tspan>')
GLYPH = re.compile(r'<g id="([^"]+)">\s*<path transform="([^"]*)" d="([^"]*)"\s*/>\s*</g>')
USE = re.compile(r'<use xlink:href="#([^"]+)" transform="([^"]*)"\s*/>')
# Verovio centres a short rest on its display step and sets a half rest on its line, where
# MuseScore draws them two steps further from the middle line; the MusicXML is written for
# MuseScore's way. (A half rest above the middle already clears the notes below it.)
VEROVIO_REST_STEPS = 2
STEPS = "CDEFGAB"
MIDDLE_LINE = 4 * 7 + STEPS.index("B")  # B4, in diatonic steps


def musicxml_bytes(score: stream.Score) -> bytes:
    """The score as MusicXML that notation programs open as a drum set.

    ``build_score`` already writes measures, rests, beams and tuplets, so music21's own
    notation pass (a deep copy of the score, half the export time) is skipped."""
    exporter = ScoreExporter(score, makeNotation=False)
    root = exporter.parse()
    add_drum_kit(root)
    place_directions(root)
    return exporter.asBytes()


def svg_pages(musicxml: bytes) -> list[str]:
    """One SVG per A4 page."""
    toolkit = load_toolkit(musicxml, PAGE)
    return [toolkit.renderToSVG(page) for page in range(1, toolkit.getPageCount() + 1)]


def system_svg(musicxml: bytes) -> str:
    """All bars on one line, cropped to fit: the live view."""
    return load_toolkit(musicxml, SYSTEM).renderToSVG(1)


def pdf_bytes(pages: list[str]) -> bytes:
    """The SVG pages as one PDF, each scaled to A4 width (Verovio's SVG size grows with its scale)."""
    output = io.BytesIO()
    pdf = cairocffi.PDFSurface(output, *A4_POINTS)
    for svg in pages:
        _PdfPage(pdf, cairo_ready(svg)).context.show_page()
    pdf.finish()
    return output.getvalue()


def cairo_ready(svg: str) -> bytes:
    """The SVG with its SMuFL text swapped for Unicode symbols cairo can draw, and each
    ``<use>`` of a glyph replaced by the glyph's path: the same drawing, but cairosvg
    spends half a page's time resolving references otherwise."""
    def plain(match: re.Match) -> str:
        text = "".join(SMUFL_TEXT.get(c, "") for c in match.group(2))
        return f'<tspan font-family="DejaVu Sans" font-size="{int(match.group(1)) * 2 // 3}px">{text}</tspan>'

    glyphs = {name: (transform, path) for name, transform, path in GLYPH.findall(svg)}

    def inline(match: re.Match) -> str:
        if match.group(1) not in glyphs:
            return match.group(0)
        transform, path = glyphs[match.group(1)]
        return f'<path transform="{match.group(2)} {transform}" d="{path}" />'
    return USE.sub(inline, SMUFL_SPAN.sub(plain, svg)).encode()


def load_toolkit(musicxml: bytes, options: dict) -> verovio.toolkit:
    # The package sets its data folder as a default for the importing thread only; workers
    # render in other threads, so every toolkit is told where its fonts are.
    toolkit = verovio.toolkit(False)
    toolkit.setResourcePath(VEROVIO_DATA)
    toolkit.setOptions(options)
    if not toolkit.loadData(_verovio_rests(musicxml)):
        raise ValueError("Verovio could not read the MusicXML")
    return toolkit


def _verovio_rests(musicxml: bytes) -> str:
    """The MusicXML with its placed rests moved as far out for Verovio as MuseScore draws them."""
    root = ET.fromstring(musicxml)
    for element in root.iter("note"):
        rest = element.find("rest")
        kind = element.findtext("type")
        if rest is None or rest.find("display-step") is None or kind in ("whole", None):
            continue
        step = STEPS.index(rest.findtext("display-step")) + 7 * int(rest.findtext("display-octave"))
        if kind == "half" and step > MIDDLE_LINE:
            continue
        step += VEROVIO_REST_STEPS if step > MIDDLE_LINE else -VEROVIO_REST_STEPS
        rest.find("display-step").text, rest.find("display-octave").text = STEPS[step % 7], str(step // 7)
    return ET.tostring(root, encoding="unicode")


class _PdfPage(cairosvg.surface.PDFSurface):
    """Draws one SVG as the next page of a shared cairo PDF surface."""

    def __init__(self, pdf: cairocffi.PDFSurface, svg: bytes) -> None:
        self._pdf = pdf
        super().__init__(cairosvg.parser.Tree(bytestring=svg), None, 72, output_width=A4_POINTS[0])

    def _create_surface(self, width: float, height: float) -> tuple[cairocffi.PDFSurface, float, float]:
        self._pdf.set_size(width, height)
        return self._pdf, width, height
