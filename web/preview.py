"""A finished job's score as SVG pages, for the page to show (the downloads are attachments).

``GET /api/v1/jobs/{id}/preview/{page}`` renders page ``page`` (from 1) of the job's
MusicXML with the same engraving as its PDF, each page cut to its music (a short score is
not a mostly blank A4); rendered pages are kept in the job's folder.
"""
from __future__ import annotations

from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from batch.score.render import PAGE, _toolkit
from web.errors import ApiError
from web.jobs_api import _finished_file, _job


PREVIEW = {**PAGE, "adjustPageHeight": True}


def svg_pages(musicxml: bytes) -> list[str]:
    toolkit = _toolkit(musicxml, PREVIEW)
    return [toolkit.renderToSVG(page) for page in range(1, toolkit.getPageCount() + 1)]


def render_page(musicxml: Path, page: int) -> str | None:
    cached = musicxml.parent / f"preview-{page}.svg"
    if cached.exists():
        return cached.read_text()
    pages = svg_pages(musicxml.read_bytes())
    for number, svg in enumerate(pages, start=1):
        (musicxml.parent / f"preview-{number}.svg").write_text(svg)
    return pages[page - 1] if 1 <= page <= len(pages) else None


async def preview(request: Request) -> Response:
    job = await _job(request)
    path, _ = _finished_file(request, job, "musicxml")
    page = request.path_params["page"]
    svg = await run_in_threadpool(render_page, path, page)
    if svg is None:
        raise ApiError(404, "not_found", f"the score has no page {page}")
    return Response(svg, media_type="image/svg+xml", headers={"Cache-Control": "private, max-age=3600"})


routes = [Route("/jobs/{job_id:str}/preview/{page:int}", preview, methods=["GET"])]
