"""A finished job's score as SVG pages, for the page to show (the downloads are attachments).

``GET /api/v1/jobs/{id}/preview/{page}`` renders page ``page`` (from 1) of the job's
MusicXML with the same engraving as its PDF, each page cut to its music (a short score is
not a mostly blank A4); rendered pages are stored with the job's files.
"""
from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from batch.score.render import PAGE, _toolkit
from batch.storage import Storage
from web.errors import ApiError
from web.jobs_api import _finished_file, _job, gone


PREVIEW = {**PAGE, "adjustPageHeight": True}


def svg_pages(musicxml: bytes) -> list[str]:
    toolkit = _toolkit(musicxml, PREVIEW)
    return [toolkit.renderToSVG(page) for page in range(1, toolkit.getPageCount() + 1)]


def render_page(storage: Storage, job_id: str, musicxml: str, page: int) -> str | None:
    """Page ``page`` of the job's score, rendered once and stored beside it."""
    try:
        return storage.read(job_id, f"preview-{page}.svg").decode()
    except FileNotFoundError:
        pass
    pages = svg_pages(storage.read(job_id, musicxml))
    for number, svg in enumerate(pages, start=1):
        storage.write(job_id, f"preview-{number}.svg", svg.encode())
    return pages[page - 1] if 1 <= page <= len(pages) else None


async def preview(request: Request) -> Response:
    job = await _job(request)
    musicxml, _ = _finished_file(job, "musicxml")
    page = request.path_params["page"]
    try:
        svg = await run_in_threadpool(render_page, request.app.state.storage, job["id"], musicxml, page)
    except FileNotFoundError:
        raise gone() from None
    if svg is None:
        raise ApiError(404, "not_found", f"the score has no page {page}")
    return Response(svg, media_type="image/svg+xml", headers={"Cache-Control": "private, max-age=3600"})


routes = [Route("/jobs/{job_id:str}/preview/{page:int}", preview, methods=["GET"])]
