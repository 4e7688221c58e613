"""yt-dlp with every request checked: the first one and each redirect, before a byte is sent.

yt-dlp follows redirects inside its request handlers, so checking the URL it is given is not
enough. ``GuardedYoutubeDL`` sends everything through one handler, yt-dlp's own ``requests``
handler with a check before each request and a ``requests`` response hook that checks each
redirect's target before ``requests`` follows it. A refusal is a yt-dlp ``RequestError``, so
yt-dlp reports it as a failed download rather than trying another handler.

What remains: the check resolves the host itself and ``requests`` resolves it again to connect;
only hosts on the allow-list get that far, and their DNS is not the caller's to steer.
"""
from __future__ import annotations

import functools
from urllib.parse import urljoin

import yt_dlp
from yt_dlp.networking.exceptions import RequestError

try:
    from yt_dlp.networking._requests import RequestsRH
except ImportError as error:  # yt-dlp loads it only when ``requests`` is installed
    raise ImportError("link downloads need the 'requests' package (yt-dlp's HTTP handler)") from error

from batch.links import HopPolicy, Link, LinkRefused

# A YouTube link goes to YouTube's extractors only (a video; a watch URL with a playlist in it);
# a host the operator listed gets the generic one, which reads a media file from a plain URL.
YOUTUBE_EXTRACTORS = ["youtube", "youtube:tab"]
OTHER_EXTRACTORS = ["generic"]


class FetchRefused(RequestError):
    """A request the link may not lead to; its message names no URL."""


class GuardedRH(RequestsRH):
    """yt-dlp's ``requests`` handler, checking each request and redirect against ``policy``."""

    policy: HopPolicy

    def _send(self, request):
        self._check(request.url)
        return super()._send(request)

    def _create_instance(self, cookiejar, legacy_ssl_support=None):
        session = super()._create_instance(cookiejar, legacy_ssl_support)
        session.hooks["response"].append(self._check_redirect)
        return session

    def _check_redirect(self, response, **_):
        """Runs on every response, before ``requests`` follows a redirect."""
        if response.is_redirect:
            try:
                self._check(urljoin(response.url, response.headers["location"]))
            except FetchRefused:
                response.close()
                raise
        return response

    def _check(self, url: str) -> None:
        try:
            self.policy.check(url)
        except LinkRefused as error:
            raise FetchRefused(str(error)) from None


class GuardedYoutubeDL(yt_dlp.YoutubeDL):
    """A ``YoutubeDL`` for one link: its extractors and every request it makes are the link's."""

    def __init__(self, link: Link, params: dict) -> None:
        self._policy = HopPolicy(link)
        extractors = YOUTUBE_EXTRACTORS if link.youtube else OTHER_EXTRACTORS
        super().__init__({**params, "allowed_extractors": extractors})

    @functools.cached_property
    def _request_director(self):
        director = self.build_request_director([GuardedRH])
        for handler in director.handlers.values():
            handler.policy = self._policy
        return director
