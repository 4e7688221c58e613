"""A finished job's score as the page shows it: its pages, and when each of its notes sounds.

``GET /api/v1/jobs/{id}/preview`` tells the page's score viewer and player what they need: the
number of pages, the time in the recording at which each bar starts and each chord sounds (with
the ids of its notes in the pages), and the job's details (tempo, metre, feel, separation, model).
``GET /api/v1/jobs/{id}/preview/{page}`` is page ``page`` (from 1) as SVG, with the same
engraving as the PDF, each page cut to its music (a short score is not a mostly blank A4).
``?layout=narrow`` (both) lays the music out on pages half as wide, for a phone: a bar or two
a line at twice the size, where an A4 page at a phone's width is too small to read.

Pages and timemap come from one verovio rendering with a fixed id seed, so the note ids the
timemap names are those in the pages; both are stored with the job's files. Score time (quarter
notes) becomes recording time through the beats in the result JSON (``batch.score.timeline``).
"""
from __future__ import annotations

import gzip
import json
import re

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from batch.score.render import PAGE, SMUFL_SPAN, SMUFL_TEXT, load_toolkit
from batch.storage import Storage
from web.errors import ApiError
from web.jobs_api import finished_file, gone, visible_job
from web.recordings import recording_name
from web.score_clock import score_clock

PREVIEW = {**PAGE, "adjustPageHeight": True, "xmlIdSeed": 1}
LAYOUTS = {"a4": PREVIEW, "narrow": {**PREVIEW, "pageWidth": PAGE["pageWidth"] // 2}}
DETAILS = ("title", "duration", "bpm", "time_signature", "feel", "separation", "model", "summary")
FONT_FACE = re.compile(r"<style[^>]*>\s*@font-face.*?</style>", re.S)


def view_name(layout: str) -> str:
    return f"view-{layout}.json"  # stored last: its presence means the pages are there too


def page_name(layout: str, page: int) -> str:
    return f"view-{layout}-{page}.svg"


def layout_of(request: Request) -> str:
    layout = request.query_params.get("layout", "a4")
    if layout not in LAYOUTS:
        raise ApiError(400, "invalid_option", f"layout must be one of {', '.join(LAYOUTS)}, not {layout[:20]!r}")
    return layout


def plain_text(svg: str) -> str:
    """The page without its embedded music font (about 90 kB a page): its only use, the tempo
    mark's note, becomes the Unicode note, which the page's own fonts draw."""
    def plain(match: re.Match) -> str:
        text = "".join(SMUFL_TEXT.get(c, "") for c in match.group(2))
        return f'<tspan font-size="{int(match.group(1)) * 2 // 3}px">{text}</tspan>'
    return SMUFL_SPAN.sub(plain, FONT_FACE.sub("", svg))


def render_view(musicxml: bytes, result: dict, layout: str = "a4") -> tuple[list[str], dict]:
    """The score's SVG pages and what the page's player needs to follow them."""
    toolkit = load_toolkit(musicxml, LAYOUTS[layout])
    pages = [plain_text(toolkit.renderToSVG(page)) for page in range(1, toolkit.getPageCount() + 1)]
    timemap = toolkit.renderToTimemap({"includeMeasures": True})
    measures = [(entry["qstamp"], entry["measureOn"]) for entry in timemap if "measureOn" in entry]
    end = max(entry["qstamp"] for entry in timemap)
    clock = score_clock([q for q, _ in measures], end, result)
    view = {
        "pages": len(pages),
        "bars": [{"n": toolkit.getElementAttr(measure).get("n", str(i + 1)), "id": measure, "t": clock(q)}
                 for i, (q, measure) in enumerate(measures)],
        "notes": [{"t": clock(entry["qstamp"]), "ids": entry["on"]} for entry in timemap if entry.get("on")],
        "end": clock(end),
        "details": {key: result[key] for key in DETAILS if key in result},
    }
    return pages, view


def stored_view(storage: Storage, job_id: str, musicxml: str, layout: str) -> dict:
    """The job's view, rendered once and stored beside its files (the same ids each time, so
    two requests rendering at once store the same pages)."""
    try:
        return json.loads(storage.read(job_id, view_name(layout)))
    except FileNotFoundError:
        pass
    result = json.loads(storage.read(job_id, "result.json"))
    pages, view = render_view(storage.read(job_id, musicxml), result, layout)
    for number, svg in enumerate(pages, start=1):
        storage.write(job_id, page_name(layout, number), svg.encode())
    storage.write(job_id, view_name(layout), json.dumps(view).encode())
    return view


def stored_page(storage: Storage, job_id: str, musicxml: str, layout: str, page: int) -> str | None:
    if not 1 <= page <= stored_view(storage, job_id, musicxml, layout)["pages"]:
        return None
    return storage.read(job_id, page_name(layout, page)).decode()


async def view(request: Request) -> Response:
    job = await visible_job(request)
    musicxml, _ = finished_file(job, "musicxml")
    layout = layout_of(request)
    try:
        found = await run_in_threadpool(stored_view, request.app.state.storage, job["id"], musicxml, layout)
    except FileNotFoundError:
        raise gone() from None
    base = f"/api/v1/jobs/{job['id']}"
    recording = await run_in_threadpool(recording_name, request, job["id"])
    pages = [f"{base}/preview/{n}" + ("" if layout == "a4" else f"?layout={layout}") for n in range(1, found["pages"] + 1)]
    return JSONResponse({**found, "layout": layout, "page_urls": pages, "audio": f"{base}/audio" if recording else None})


async def preview(request: Request) -> Response:
    job = await visible_job(request)
    musicxml, _ = finished_file(job, "musicxml")
    page, layout = request.path_params["page"], layout_of(request)
    try:
        svg = await run_in_threadpool(stored_page, request.app.state.storage, job["id"], musicxml, layout, page)
    except FileNotFoundError:
        raise gone() from None
    if svg is None:
        raise ApiError(404, "not_found", f"the score has no page {page}")
    headers = {"Cache-Control": "private, max-age=3600", "Vary": "Accept-Encoding"}
    body = svg.encode()
    if "gzip" in request.headers.get("accept-encoding", ""):  # SVG shrinks tenfold: a phone's page loads sooner
        body, headers["Content-Encoding"] = gzip.compress(body, 6), "gzip"
    return Response(body, media_type="image/svg+xml", headers=headers)


routes = [
    Route("/jobs/{job_id:str}/preview", view, methods=["GET"]),
    Route("/jobs/{job_id:str}/preview/{page:int}", preview, methods=["GET"]),
]
