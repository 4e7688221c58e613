"""WebRTC transport of a live session: the browser's mic as an Opus track, messages over a DataChannel.

``POST /api/v1/rtc/offer`` takes the browser's SDP offer (all ICE candidates gathered, no
trickle) and answers. The decoded audio frames of the track feed a live session opened on
the first frame (so a hit's ``t`` counts from the first sample the server heard); the
messages of the WebSocket protocol (``ready``, ``hits``, ``tempo``, ``notation``, ``final``,
``error``) go out as JSON text over the DataChannel named ``events`` that the browser
creates, buffered until it opens. ``{"type": "stop"}`` on that channel ends the session
and sends ``final``; a peer connection that closes or fails has its session finalized
all the same.

ICE servers (STUN/TURN) come from ``DRUMSCRIBE_ICE_SERVERS`` (comma-separated URLs), used
by the server and handed to the page by ``GET /api/v1/rtc/config``; none by default, which
is what a loopback or LAN connection needs.
"""
from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import time
import weakref
from typing import Literal

import av
import numpy as np
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.jitterbuffer import JitterBuffer
from aiortc.mediastreams import MediaStreamError
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from stream import bounded_json
from stream.addresses import client_key
from stream.gateway import FINALIZE_FAILED, Gateway, ProtocolError
from stream.pace import SessionTooSlow
from stream.runner import LiveRunner, SessionTooLong
from web.bodies import read_json, validate
from web.access import live_lease
from web.errors import ApiError
from web.quotas import Lease

log = logging.getLogger("drumscribe.rtc")

RATE = 48000
MAX_OFFER_BYTES = 64 * 1024
MAX_GAP_SECONDS = 1.0  # lost packets are filled with silence up to this, to keep hit times on the sample clock
# aiortc holds 4 Opus packets (80 ms) in its audio jitter buffer before decoding the first of
# them; hits need the audio sooner. 1 = decode a packet once the next one is in (20 ms).
JITTER_PREFETCH = int(os.environ.get("DRUMSCRIBE_RTC_PREFETCH", "1"))
# Opus encoders look 6.5 ms ahead (312 samples at 48 kHz, RFC 7845's usual pre-skip); decoded
# audio starts that much before the first captured sample, so it is dropped to keep t = 0 there.
OPUS_DELAY_SAMPLES = 312
CONNECT_TIMEOUT = 30.0  # a peer not connected by then is dropped
MAX_BUFFERED_BYTES = 4 << 20
MAX_CONTROL_BYTES = 4096  # a DataChannel message; only {"type": "stop"} is expected


def ice_servers_from_env(value: str | None = None) -> list[str]:
    value = os.environ.get("DRUMSCRIBE_ICE_SERVERS", "") if value is None else value
    return [url.strip() for url in value.split(",") if url.strip()]


class RtcPeers:
    """The open peer connections of the app; closed all at once on shutdown.

    Each holds UDP sockets from its offer on, before any session opens, so offers are
    capped: ``per_address`` open peers per client address (``DRUMSCRIBE_RTC_PER_ADDRESS``),
    and as many in all as the gateway has session slots."""

    def __init__(self, ice_servers: list[str] | None = None, per_address: int | None = None) -> None:
        self.ice_servers = ice_servers_from_env() if ice_servers is None else ice_servers
        self.per_address = int(os.environ.get("DRUMSCRIBE_RTC_PER_ADDRESS", "4")) if per_address is None else per_address
        self.peers: set[Peer] = set()
        self.addresses: weakref.WeakKeyDictionary[Peer, str] = weakref.WeakKeyDictionary()

    def refusal(self, address: str, total: int) -> str | None:
        """Why a new offer from ``address`` is refused, or None."""
        if len(self.peers) >= total:
            return f"the server holds its limit of {total} WebRTC connections; try again later"
        if sum(1 for peer in self.peers if self.addresses.get(peer) == address) >= self.per_address:
            return f"this address holds its limit of {self.per_address} WebRTC connections"
        return None

    def configuration(self) -> RTCConfiguration:
        return RTCConfiguration(iceServers=[RTCIceServer(urls=url) for url in self.ice_servers])

    async def close(self) -> None:
        await asyncio.gather(*(peer.close() for peer in list(self.peers)), return_exceptions=True)


class Peer:
    """One browser: its RTCPeerConnection, its audio track, its DataChannel, its live session."""

    def __init__(self, peers: RtcPeers, gateway: Gateway, separate: bool = False, lease: Lease | None = None) -> None:
        self.peers, self.gateway, self.separate = peers, gateway, separate
        self.lease = lease or Lease()  # the session's slot of its API key, held from the offer to the close
        self.pc = RTCPeerConnection(peers.configuration())
        self.channel = None
        self.pending: list[str] = []
        self.runner: LiveRunner | None = None
        self.reader: asyncio.Task | None = None
        self.stopping: asyncio.Task | None = None
        self.closed = False
        self.watchdog: asyncio.Task | None = None
        self.codec_delay = 0  # samples at 48 kHz to drop at the start
        self.halting = self.receiving = False
        peers.peers.add(self)

        @self.pc.on("datachannel")
        def on_datachannel(channel) -> None:
            if channel.label != "events":
                return
            self.channel = channel

            @channel.on("open")
            def on_open() -> None:
                self._flush()

            @channel.on("message")
            def on_message(message) -> None:
                self._control(message)

            if channel.readyState == "open":
                self._flush()

        @self.pc.on("track")
        def on_track(track) -> None:
            if track.kind == "audio" and self.reader is None:
                self.reader = asyncio.get_running_loop().create_task(self._read(track))

        @self.pc.on("connectionstatechange")
        async def on_state() -> None:
            if self.pc.connectionState in ("failed", "closed"):
                await self.close()

    # -- messages out -----------------------------------------------------------------

    def emit(self, message: dict) -> None:
        if self.closed:
            return
        self.pending.append(json.dumps(message))
        self._flush()
        # A browser that does not read: drop it rather than hold its messages without end.
        buffered = self.channel.bufferedAmount if self.channel is not None else 0
        if len(self.pending) > self.gateway.settings.outbox_limit or buffered > MAX_BUFFERED_BYTES:
            log.warning("dropping a WebRTC peer that does not read its messages")
            self._close_soon(0)

    def _close_soon(self, delay: float) -> None:
        async def later() -> None:
            await asyncio.sleep(delay)
            await self.close()

        if not self.closed:
            asyncio.get_running_loop().create_task(later())

    def _flush(self) -> None:
        channel = self.channel
        if channel is None or channel.readyState != "open":
            return
        while self.pending:
            try:
                channel.send(self.pending[0])
            except Exception:  # the channel closed under us: the peer is going away
                return
            self.pending.pop(0)

    # -- messages in ------------------------------------------------------------------

    def _control(self, message) -> None:
        try:
            payload = bounded_json.loads(message.encode(), MAX_CONTROL_BYTES) if isinstance(message, str) else None
        except bounded_json.JsonRejected as error:
            self.emit({"type": "error", "code": error.code, "message": error.message})
            return
        if not isinstance(payload, dict) or payload.get("type") != "stop":
            self.emit({"type": "error", "code": "unexpected_message",
                       "message": "only {\"type\": \"stop\"} is expected on this channel"})
            return
        if self.stopping is None:
            self.stopping = asyncio.get_running_loop().create_task(self._stop())

    async def _halt_reader(self) -> None:
        """Stop reading audio, between frames: a frame the session is working on is finished
        (cancelling it midway would lose that window's hits), a wait for the next is cut short."""
        self.halting = True
        if self.reader is not None and not self.reader.done() and self.reader is not asyncio.current_task():
            if self.receiving:
                self.reader.cancel()
            await asyncio.gather(self.reader, return_exceptions=True)

    async def _stop(self) -> None:
        """Stop the audio, flush and finalize, send ``final``."""
        await self._halt_reader()
        runner = self.runner
        if runner is None:
            self.emit({"type": "final", "session_id": None, "job_id": None, "status": "empty",
                       "hits_total": 0, "downloads": {}})
            return
        self.gateway.close_session(runner)
        try:
            final = await asyncio.wait_for(asyncio.shield(runner.finalize()), self.gateway.settings.finalize_timeout)
        except asyncio.TimeoutError:
            self.emit({"type": "error", "code": "finalize_timeout",
                       "message": "the score is still being made; fetch it later by session id"})
            return
        except Exception:
            self.emit({"type": "error", "code": "finalize_failed",
                       "message": f"{FINALIZE_FAILED} (session {runner.session.id})"})
            return
        self.emit(final)

    # -- audio ------------------------------------------------------------------------

    def _open(self, channels: int) -> LiveRunner | None:
        start = {"type": "start", "sample_rate": RATE, "channels": channels, "encoding": "s16le",
                 "separate": self.separate}
        try:
            runner = self.gateway.admit(self.peers.addresses.get(self, ""), start, self.emit, self.lease.owner)
        except ProtocolError as error:
            self.emit({"type": "error", "code": error.code, "message": str(error)})
            self._close_soon(2.0)  # time for the error to reach the browser
            return None
        self.emit(self.gateway.ready_message(runner.session))
        return runner

    async def _read(self, track) -> None:
        resampler: av.AudioResampler | None = None
        next_pts: int | None = None
        frame_bytes = skip = 0
        last_frame = time.monotonic()
        try:
            while not self.halting:
                self.receiving = True
                runner, idle_at = self.runner, last_frame + self.gateway.settings.idle_timeout
                until = runner.pace.deadline if runner is not None else math.inf  # the minimum rate's next check
                try:
                    frame = await asyncio.wait_for(track.recv(), max(0.0, min(idle_at, until) - time.monotonic()))
                except MediaStreamError:  # the track ended: the browser is gone
                    self._close_soon(0)
                    return
                except asyncio.TimeoutError:
                    if runner is not None and until < idle_at:
                        runner.check_pace()
                        continue
                    idle = self.gateway.settings.idle_timeout
                    self.emit({"type": "error", "code": "idle", "message": f"no audio for {idle:g} s"})
                    self._close_soon(2.0)
                    return
                finally:
                    self.receiving = False
                last_frame = time.monotonic()
                if self.runner is None:
                    channels = 2 if len(frame.layout.channels) >= 2 else 1
                    resampler = av.AudioResampler(format="s16", layout="stereo" if channels == 2 else "mono", rate=RATE)
                    self.runner = self._open(channels)
                    if self.runner is None:
                        return
                    frame_bytes = 2 * channels
                    skip = self.codec_delay * frame_bytes
                pcm = b"".join(pcm_bytes(out) for out in resampler.resample(frame))
                if skip:
                    dropped = min(skip, len(pcm))
                    pcm, skip = pcm[dropped:], skip - dropped
                # Packets lost on the way: keep the sample clock with silence, as the browser captured them.
                if frame.pts is not None and frame.time_base is not None and frame.sample_rate:
                    pts = int(round(frame.pts * frame.time_base * RATE))
                    if next_pts is not None and 0 < pts - next_pts <= MAX_GAP_SECONDS * RATE:
                        pcm = bytes((pts - next_pts) * frame_bytes) + pcm
                    next_pts = pts + int(round(frame.samples * RATE / frame.sample_rate))
                if pcm:
                    await self.runner.audio(pcm)
                self.runner.check_pace()
        except SessionTooLong as error:
            self.emit({"type": "error", "code": "too_long", "message": str(error)})
            if self.stopping is None:
                self.stopping = asyncio.get_running_loop().create_task(self._stop())
        except SessionTooSlow as error:
            self.emit({"type": "error", "code": "too_slow", "message": str(error)})
            self._close_soon(2.0)  # closing finalizes the session
        except asyncio.CancelledError:
            raise
        except Exception:  # a failing disk under the recording, or anything unforeseen: end it all, keep nothing held
            log.exception("reading the audio track failed")
            self.emit({"type": "error", "code": "internal", "message": "the live session failed on the server"})
            self._close_soon(2.0)  # closing finalizes the session and frees its slots

    # -- the end ----------------------------------------------------------------------

    def watch_connecting(self, timeout: float = CONNECT_TIMEOUT) -> None:
        async def watch() -> None:
            await asyncio.sleep(timeout)
            if self.pc.connectionState != "connected":
                await self.close()

        self.watchdog = asyncio.get_running_loop().create_task(watch())

    async def close(self) -> None:
        """The peer is gone (or the app stops): finalize its session, close the connection."""
        if self.closed:
            return
        self.closed = True
        self.peers.peers.discard(self)
        if self.watchdog is not None and self.watchdog is not asyncio.current_task():
            self.watchdog.cancel()
        await self._halt_reader()
        if self.runner is not None:
            self.gateway.close_session(self.runner)  # no-op after stop: finalize runs once
        await self.lease.release()
        await self.pc.close()


def shorten_jitter_buffers(pc: RTCPeerConnection, prefetch: int = JITTER_PREFETCH) -> None:
    """Swap the audio receivers' jitter buffers for shorter ones, before any packet arrives.

    aiortc has no setting for it, so this reaches into the receiver; on an aiortc without
    that attribute it leaves the default."""
    for transceiver in pc.getTransceivers():
        receiver = transceiver.receiver
        if transceiver.kind == "audio" and hasattr(receiver, "_RTCRtpReceiver__jitter_buffer"):
            receiver._RTCRtpReceiver__jitter_buffer = JitterBuffer(capacity=16, prefetch=prefetch)


def audio_codec(sdp: str) -> str | None:
    """The first (chosen) codec of the first audio section of an SDP, lower case."""
    payload = None
    for line in sdp.splitlines():
        if payload is None and line.startswith("m=audio "):
            fields = line.split()
            payload = fields[3] if len(fields) > 3 else ""
        elif payload and line.startswith(f"a=rtpmap:{payload} "):
            return line.split(" ", 1)[1].split("/")[0].lower()
    return None


def pcm_bytes(frame: av.AudioFrame) -> bytes:
    """Interleaved s16le bytes of a packed or planar s16 frame."""
    array = frame.to_ndarray()
    if frame.format.is_planar and array.shape[0] > 1:
        array = array.T
    return np.ascontiguousarray(array, dtype="<i2").tobytes()


class Offer(BaseModel):
    """The body of ``POST /api/v1/rtc/offer``."""
    model_config = ConfigDict(extra="forbid", strict=True)

    type: Literal["offer"]
    sdp: str = Field(min_length=1, max_length=MAX_OFFER_BYTES)
    separate: bool = False


async def offer(request: Request) -> Response:
    body = validate(Offer, await read_json(request, MAX_OFFER_BYTES), "invalid_offer")
    peers: RtcPeers = request.app.state.rtc
    address = client_key(request.client.host) if request.client else ""
    refusal = peers.refusal(address, request.app.state.gateway.settings.max_sessions)
    if refusal is not None:
        raise ApiError(429, "busy", refusal, {"Retry-After": "10"})
    peer = Peer(peers, request.app.state.gateway, separate=body.separate, lease=await live_lease(request))
    peers.addresses[peer] = address
    try:
        await peer.pc.setRemoteDescription(RTCSessionDescription(sdp=body.sdp, type="offer"))
        if not any(t.kind == "audio" for t in peer.pc.getTransceivers()):
            raise ValueError("it has no audio track")
        shorten_jitter_buffers(peer.pc)
        await peer.pc.setLocalDescription(await peer.pc.createAnswer())
        if audio_codec(peer.pc.localDescription.sdp) == "opus":
            peer.codec_delay = OPUS_DELAY_SAMPLES
    except Exception as error:
        await peer.close()
        raise ApiError(400, "invalid_offer", f"the offer cannot be answered: {error}") from None
    peer.watch_connecting()
    answer = peer.pc.localDescription
    return JSONResponse({"sdp": answer.sdp, "type": answer.type})


async def config(request: Request) -> Response:
    peers: RtcPeers = request.app.state.rtc
    return JSONResponse({"ice_servers": [{"urls": url} for url in peers.ice_servers]})


routes = [
    Route("/rtc/offer", offer, methods=["POST"]),
    Route("/rtc/config", config, methods=["GET"]),
]
