"""Symbols that collide on a rendered score page: Verovio's SVG or MuseScore 3's.

Each glyph is measured from the page's own drawing (svgelements resolves Verovio's ``<use>``
glyphs and MuseScore's transforms): its outline, sampled, gives one box per narrow vertical
strip, so a sloped beam or tuplet bracket, or a flag's curve, is not taken for the whole
rectangle around it; wherever ink overlaps, the strips do. Verovio's text is ``<text>`` in a
web font, so its box is the one Verovio lays it out with (``svgBoundingBoxes``). Boxes shrink
by ``TOLERANCE`` staff spaces a side, so glyphs that merely share an edge do not count. Only
kinds that must never touch are compared (``FORBIDDEN``): a chord's noteheads, a stem and its
notes, a beam and its stems are engraving.

    glyphs = verovio_score(musicxml)             # or musescore_score(svg_pages, musicxml)
    for found in collisions(glyphs): print(found)
"""
from __future__ import annotations

import io
import itertools
import math
import statistics
import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace

import numpy as np
from svgelements import SVG, Move, Path, Shape

from batch.score.render import PAGE, load_toolkit

TOLERANCE = 0.06  # staff spaces off each side of a glyph
STRIP = 0.25  # staff spaces: the width of the boxes an outline is cut into
SAMPLE = 0.05  # staff spaces between points sampled along an outline
VEROVIO_OPTIONS = {"svgBoundingBoxes": True, "svgAdditionalAttribute": ["measure@n", "layer@n"]}
LEAVES = {"path", "use", "polygon", "polyline", "rect", "ellipse", "line"}
SVG_NS = "http://www.w3.org/2000/svg"
# A page element's class -> the kind of symbol it draws.
VEROVIO_KINDS = {"notehead": "notehead", "rest": "rest", "mRest": "rest", "multiRest": "rest", "flag": "flag",
                 "stem": "stem", "beam": "beam", "tupletNum": "tuplet", "tupletBracket": "bracket",
                 "dots": "dot", "tempo": "text", "dir": "text", "dynam": "text"}
OWNERS = {"chord", "note", "rest", "mRest", "tuplet", "tempo", "dir", "dynam", "beam"}  # Verovio's, for "other"
MUSESCORE_KINDS = {"Note": "notehead", "Symbol": "notehead", "Rest": "rest", "Hook": "flag", "Stem": "stem",
                   "Beam": "beam", "NoteDot": "dot", "Tempo": "text", "StaffText": "text", "Dynamic": "text"}
NOTES = {"notehead", "rest", "flag", "stem", "beam", "dot", "tuplet", "bracket"}
# kind -> kinds it must not touch; "kind:other" only of another chord, note or rest.
FORBIDDEN = {
    "tuplet": {"notehead", "rest", "flag", "stem", "beam", "dot"},
    "bracket": {"notehead", "rest", "flag", "dot"},
    "flag": {"rest", "notehead:other", "flag:other"},
    "rest": {"notehead", "stem:other", "beam:other", "dot:other", "rest:other"},
    "text": NOTES,
}

Box = tuple[float, float, float, float]  # left, top, right, bottom in staff spaces


@dataclass(frozen=True)
class Glyph:
    kind: str
    strips: tuple[Box, ...]  # the outline, strip by strip, left to right
    bar: int | None = None  # the bar's number as the MusicXML gives it
    voice: int | None = None  # None where the renderer does not say
    owner: str = ""  # the chord, note or rest the glyph belongs to

    @property
    def box(self) -> Box:
        return (self.strips[0][0], min(s[1] for s in self.strips), self.strips[-1][2], max(s[3] for s in self.strips))


@dataclass(frozen=True)
class Collision:
    bar: int | None
    first: Glyph
    second: Glyph

    def __str__(self) -> str:
        def name(glyph: Glyph) -> str:
            return glyph.kind + (f" (voice {glyph.voice})" if glyph.voice else "")
        left, top = max(self.first.box[0], self.second.box[0]), max(self.first.box[1], self.second.box[1])
        return f"bar {self.bar if self.bar is not None else '?'}: {name(self.first)} x {name(self.second)} " \
               f"at ({left:.1f}, {top:.1f}) sp"


def collisions(glyphs: list[Glyph], tolerance: float = TOLERANCE) -> list[Collision]:
    """Every forbidden pair whose outlines, each shrunk by ``tolerance`` a side, overlap."""
    shrunk = sorted(((strips, g) for g in glyphs if (strips := _shrink(g, tolerance))), key=lambda pair: pair[0][0][0])
    found = []
    for i, (strips, glyph) in enumerate(shrunk):
        right = strips[-1][2]
        for other_strips, other in shrunk[i + 1:]:
            if other_strips[0][0] >= right:
                break
            if forbidden(glyph, other) and _touch(strips, other_strips):
                found.append(Collision(glyph.bar if glyph.bar is not None else other.bar, glyph, other))
    return sorted(found, key=lambda c: (c.bar or 0, c.first.box))


def forbidden(a: Glyph, b: Glyph) -> bool:
    """Whether glyphs of these kinds must not touch (in either order)."""
    def rule(x: Glyph, y: Glyph) -> bool:
        banned = FORBIDDEN.get(x.kind, set())
        return y.kind in banned or (f"{y.kind}:other" in banned and x.owner != y.owner)
    return rule(a, b) or rule(b, a)


def _touch(a: tuple[Box, ...], b: tuple[Box, ...]) -> bool:
    return any(p[0] < q[2] and q[0] < p[2] and p[1] < q[3] and q[1] < p[3] for p in a for q in b)


def _shrink(glyph: Glyph, by: float) -> tuple[Box, ...]:
    """The glyph's strips less ``by`` off its outer left and right and off each strip's top and
    bottom; a thin stroke (a stem, a bracket) keeps at least its middle half."""
    width = glyph.strips[-1][2] - glyph.strips[0][0]
    left, right = glyph.strips[0][0] + min(by, width / 4), glyph.strips[-1][2] - min(by, width / 4)
    kept = [(max(s[0], left), s[1] + min(by, (s[3] - s[1]) / 4), min(s[2], right), s[3] - min(by, (s[3] - s[1]) / 4))
            for s in glyph.strips]
    return tuple(s for s in kept if s[0] < s[2] and s[1] < s[3])


def verovio_score(musicxml: bytes) -> list[Glyph]:
    """Glyphs of every page of the score as DrumScribe draws it (``batch.score.render``'s A4 pages)."""
    toolkit = load_toolkit(musicxml, {**PAGE, **VEROVIO_OPTIONS})
    return [g for page in range(1, toolkit.getPageCount() + 1) for g in verovio_glyphs(toolkit.renderToSVG(page))]


def musescore_score(pages: list[str], musicxml: bytes) -> list[Glyph]:
    """Glyphs of MuseScore's SVG pages of the MusicXML (``mscore3 -o out.svg``: out-1.svg, ...)."""
    bars = [int(m.get("number")) for m in ET.fromstring(musicxml).iter("measure")]
    glyphs, counted = [], 0
    for svg in pages:
        found, counted = musescore_glyphs(svg, bars, counted)
        glyphs += found
    return glyphs


def verovio_glyphs(svg: str) -> list[Glyph]:
    """Glyphs of one Verovio page rendered with ``VEROVIO_OPTIONS`` (bars from ``measure@n``,
    voices from ``layer@n``, text boxes from ``svgBoundingBoxes``)."""
    root = ET.fromstring(svg)
    tags: dict[str, dict] = {}
    lines: list[float] = []
    numbers = itertools.count()

    def walk(node: ET.Element, context: dict) -> None:
        classes = node.get("class", "").split()
        if "bounding-box" in classes:
            node.clear()
            return
        name = classes[0] if classes else ""
        if VEROVIO_KINDS.get(name) == "text":
            _text_boxes(node)
        if name == "measure":
            context = {**context, "bar": int(node.get("data-n", "0")) or None}
        elif name == "layer":
            context = {**context, "voice": int(node.get("data-n", "0")) or None}
        elif name == "staff":
            context = {**context, "kind": "staff"}
        if name in OWNERS and not (name == "note" and context.get("owner_kind") == "chord"):
            context = {**context, "owner": node.get("id", ""), "owner_kind": name}
        if name in VEROVIO_KINDS:
            context = {**context, "kind": VEROVIO_KINDS[name], "group": f"g{next(numbers)}"}
        tag = node.tag.split("}")[-1]
        if tag in LEAVES and context.get("kind") == "staff" and tag == "path":
            lines.append(float(node.get("d").replace("M", " ").replace("L", " ").split()[1]))
        elif tag in LEAVES and "kind" in context and context["kind"] != "staff":
            key = context["group"] if context["kind"] != "beam" else f"b{next(numbers)}"  # a beam: each stroke
            node.set("data-glyph", key)
            tags[key] = context
        for child in list(node):
            walk(child, context)

    walk(root, {})
    space = _median_gap(lines) * _outer_scale(root)
    return [Glyph(tags[key]["kind"], strips, tags[key].get("bar"), tags[key].get("voice"), tags[key].get("owner", ""))
            for key, strips in _outlines(ET.tostring(root, encoding="unicode"), space).items()]


def musescore_glyphs(svg: str, bars: list[int], first_index: int = 0) -> tuple[list[Glyph], int]:
    """Glyphs of one MuseScore SVG page, their bars read off the barlines: ``bars`` are the
    score's bar numbers in order, ``first_index`` how many of them earlier pages hold.
    Returns the glyphs and the bars counted so far."""
    root = ET.fromstring(svg)
    staff_lines: list[float] = []
    barlines: list[tuple[float, float]] = []
    for n, node in enumerate(root.iter()):
        kind = node.get("class", "")
        if kind == "StaffLines":
            staff_lines.append(float(node.get("points").split()[0].split(",")[1]))
        elif kind == "BarLine":
            points = [tuple(float(v) for v in p.split(",")) for p in node.get("points").split()]
            barlines.append((points[0][0], (points[0][1] + points[-1][1]) / 2))
        elif kind == "Tuplet":  # its number is a path, its bracket polylines
            node.set("data-glyph", f"{'tuplet' if node.tag.endswith('path') else 'bracket'}:{n}")
        elif kind in MUSESCORE_KINDS:
            node.set("data-glyph", f"{MUSESCORE_KINDS[kind]}:{n}")
    if not staff_lines:
        return [], first_index
    space = _median_gap(staff_lines)
    staves = sorted(staff_lines[k] / space + 2 for k in range(0, len(staff_lines), 5))  # middle lines
    per_staff = [sorted(x / space for x, y in barlines if _nearest(staves, y / space) == s)
                 for s in range(len(staves))]
    before = [first_index + sum(len(xs) for xs in per_staff[:s]) for s in range(len(staves))]
    glyphs = []
    for key, strips in _outlines(ET.tostring(root, encoding="unicode"), space).items():
        left, top, right, bottom = Glyph("", strips).box
        staff = _nearest(staves, (top + bottom) / 2)
        index = before[staff] + sum(1 for x in per_staff[staff] if x < (left + right) / 2)
        glyphs.append(Glyph(key.split(":")[0], strips, bars[index] if index < len(bars) else None, None, key))
    return _by_stem(glyphs), before[-1] + len(per_staff[-1])


def shifted(glyph: Glyph, dx: float, dy: float) -> Glyph:
    """The glyph moved by (dx, dy) staff spaces, as another chord's: to make a collision on purpose."""
    strips = tuple((s[0] + dx, s[1] + dy, s[2] + dx, s[3] + dy) for s in glyph.strips)
    return replace(glyph, strips=strips, owner=glyph.owner + "'")


def _by_stem(glyphs: list[Glyph]) -> list[Glyph]:
    """MuseScore's glyphs with each notehead and flag owned by the stem it sits on, as Verovio's
    are by their chord: a stem runs from its farthest notehead's side, a flag hangs from its tip."""
    stems = [g for g in glyphs if g.kind == "stem"]

    def holds(stem: Glyph, glyph: Glyph) -> bool:
        x, (_, stem_top, _, stem_bottom) = (stem.box[0] + stem.box[2]) / 2, stem.box
        left, top, right, bottom = glyph.box
        if glyph.kind == "notehead":
            return left - 0.1 <= x <= right + 0.1 and stem_top - 0.5 <= (top + bottom) / 2 <= stem_bottom + 0.5
        tip = top - 0.1 <= stem_top <= bottom or top <= stem_bottom <= bottom + 0.1
        return glyph.kind == "flag" and abs(left - x) < 0.3 and tip

    return [replace(g, owner=next((s.owner for s in stems if holds(s, g)), g.owner)) for g in glyphs]


def _text_boxes(node: ET.Element) -> None:
    """Replace a text's drawing by the boxes Verovio laid its spans out in (``svgBoundingBoxes``)."""
    rects = [rect for box in node.iter() if "bounding-box" in box.get("class", "").split()
             for rect in box if rect.tag.endswith("rect")]
    for child in list(node):
        node.remove(child)
    node.extend(rects)


def _outlines(svg: str, space: float) -> dict[str, tuple[Box, ...]]:
    """Each ``data-glyph`` key's drawing (all its shapes) as strip boxes in staff spaces;
    ``space``: the staff space in the page's outer units."""
    points: dict[str, list[np.ndarray]] = {}
    for element in SVG.parse(io.StringIO(svg)).elements():
        key = element.values.get("data-glyph") if isinstance(element, Shape) else None
        if key is None or element.bbox() is None:
            continue
        stroked = "stroke-width" in element.values.get("attributes", {})
        pad = element.implicit_stroke_width / 2 / space if stroked else 0.0
        for segment in abs(Path(element)):
            if isinstance(segment, Move) or segment.bbox() is None:
                continue
            left, top, right, bottom = (v / space for v in segment.bbox())
            count = 2 + math.ceil(2 * (right - left + bottom - top) / SAMPLE)
            sampled = np.asarray(segment.npoint(np.linspace(0, 1, count)), dtype=float) / space
            points.setdefault(key, []).append(np.column_stack([sampled, np.full(len(sampled), pad)]))
    return {key: _strips(np.concatenate(parts)) for key, parts in points.items()}


def _strips(points: np.ndarray) -> tuple[Box, ...]:
    """Strip boxes around (x, y, pad) points: each point stands for a square pad a side."""
    low_x, high_x = points[:, 0] - points[:, 2], points[:, 0] + points[:, 2]
    low_y, high_y = points[:, 1] - points[:, 2], points[:, 1] + points[:, 2]
    left, right = float(low_x.min()), float(high_x.max())
    strips = []
    for start in np.arange(left, right, STRIP) if right > left else [left]:
        end = min(start + STRIP, right)
        inside = (low_x <= end) & (high_x >= start)
        if inside.any():
            strips.append((float(start), float(low_y[inside].min()), float(end), float(high_y[inside].max())))
    return tuple(strips)


def _nearest(values: list[float], y: float) -> int:
    return min(range(len(values)), key=lambda k: abs(values[k] - y))


def _median_gap(lines: list[float]) -> float:
    """The staff space: the usual gap between neighbouring staff lines."""
    ordered = sorted(set(lines))
    return statistics.median(b - a for a, b in zip(ordered, ordered[1:]))


def _outer_scale(root: ET.Element) -> float:
    """Outer SVG units per inner unit of Verovio's ``definition-scale`` viewBox."""
    inner = next(n for n in root.iter(f"{{{SVG_NS}}}svg") if n.get("class") == "definition-scale")
    return float(root.get("width").removesuffix("px")) / float(inner.get("viewBox").split()[2])
