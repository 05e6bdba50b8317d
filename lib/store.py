"""The download's worker processes: validate, shrink and write one image each, fed from the
event loop.

In: a downloaded body, the folder and file stem it goes to, and ``ImageLimits``; or the path of
an image already on disk. Out: the image written atomically as ``<folder>/<stem>.<ext>``
(temp file ``.tmp*`` beside it, then ``os.replace``), or the reason it was refused
(``lib.resize``); for an image on disk, whether it is fine, was shrunk in place, or was broken
and deleted.

``StoreWorkers`` runs one process per core and talks to each over a socket pair from the event
loop itself: a request is a small header and the raw body (one copy through the kernel, never
pickled), answers come back in order. No threads in the main process, so no GIL handoffs
between the event loop and a pool's feeder threads: about a quarter of the main process's CPU
per image that ``concurrent.futures.ProcessPoolExecutor`` costs.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import pickle
import secrets
import signal
import socket
import struct
import threading
import time
import warnings
from collections.abc import AsyncIterator
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import Any

from PIL import Image

from lib.pools import set_up_decode_worker
from lib.resize import ImageLimits, check_header, prepare_image

TMP_PREFIX = ".tmp"
EXISTING_OK, EXISTING_RESIZED, EXISTING_BAD = "ok", "resized", "bad"

_REQUEST = struct.Struct("!IQ")  # length of the pickled (kind, args), length of the body
_ANSWER = struct.Struct("!I")  # length of the pickled ("ok", value) or ("error", exception)
_SLOTS_PER_WORKER = 2  # one being processed, one waiting in the socket: a worker never idles
_JOIN_TIMEOUT_S = 60.0
# Room for both slots' bodies: a request then leaves in one send(), with no write-ready
# callbacks on the event loop (the kernel may give less than asked: only slower, not wrong).
_SOCKET_BUFFER_BYTES = 8 << 20


class WorkerDied(RuntimeError):
    """A worker process ended while it had work (killed, or crashed in a decoder)."""


class StoreWorkers:
    """``count`` worker processes that store bodies and check images on disk.

    Start them (synchronously, before the event loop) with the constructor, use them inside
    ``async with workers.connected():`` and end them with ``close()``, which lets each finish
    what it was sent (at most ``_SLOTS_PER_WORKER`` images) and waits for it to exit.
    """

    def __init__(self, *, count: int, limits: ImageLimits, context: BaseContext) -> None:
        self.count = count
        self._sockets: list[socket.socket] = []
        self._processes = []
        self._lanes: list[_Lane] = []
        self._free: asyncio.Queue[_Lane] | None = None
        try:
            for _ in range(count):
                ours, theirs = socket.socketpair()
                ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SOCKET_BUFFER_BYTES)
                self._sockets.append(ours)
                process = context.Process(target=serve, args=(theirs, limits, os.getpid()),
                                          daemon=True, name="download-worker")
                process.start()  # the first one waits for the forkserver's imports
                theirs.close()
                self._processes.append(process)
        except BaseException:
            self.close()
            raise

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self._processes]

    @contextlib.asynccontextmanager
    async def connected(self) -> AsyncIterator[StoreWorkers]:
        """Hook the sockets to the running event loop for the ``async with`` block."""
        await self._connect()
        try:
            yield self
        finally:
            self._disconnect()

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        self._free = asyncio.Queue()
        for sock in self._sockets:
            _, lane = await loop.create_connection(_Lane, sock=sock)
            self._lanes.append(lane)
            for _ in range(_SLOTS_PER_WORKER):
                self._free.put_nowait(lane)
        self._sockets = []  # the transports own them now

    def _disconnect(self) -> None:
        for lane in self._lanes:
            lane.close()  # the worker reads what was sent, then the end of its socket
        self._lanes = []

    async def store(self, body: bytes, folder: Path, stem: str) -> tuple[str | None, int, bool]:
        """``store(body, folder, stem)`` in a worker."""
        return await self._call("store", (str(folder), stem), body)

    async def check_existing(self, path: str) -> str:
        """``check_existing(path)`` in a worker."""
        return await self._call("check", (path,), b"")

    async def _call(self, kind: str, args: tuple[Any, ...], body: bytes) -> Any:
        assert self._free is not None, "use the workers inside `async with workers.connected()`"
        lane = await self._free.get()
        try:
            return await lane.call(kind, args, body)
        finally:
            self._free.put_nowait(lane)

    def close(self) -> None:
        """End the workers: each finishes what it was sent, then exits (or is terminated after
        a minute, e.g. stuck in a decoder)."""
        self._disconnect()
        for sock in self._sockets:
            sock.close()
        self._sockets = []
        for process in self._processes:
            process.join(_JOIN_TIMEOUT_S)
            if process.exitcode is None:
                process.terminate()
                process.join()
        self._processes = []


class _Lane(asyncio.Protocol):
    """The event loop's end of one worker's socket: requests go out in order, answers come back
    in the same order and resolve the oldest waiting future."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._waiting: collections.deque[asyncio.Future[Any]] = collections.deque()
        self._lost: Exception | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def call(self, kind: str, args: tuple[Any, ...], body: bytes) -> asyncio.Future[Any]:
        if self._lost is not None:
            raise self._lost
        assert self._transport is not None
        meta = pickle.dumps((kind, args), protocol=pickle.HIGHEST_PROTOCOL)
        self._transport.write(_REQUEST.pack(len(meta), len(body)) + meta)
        if body:
            self._transport.write(body)  # buffered by the transport while the socket is full
        future = asyncio.get_running_loop().create_future()
        self._waiting.append(future)
        return future

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while len(self._buffer) >= _ANSWER.size:
            (size,) = _ANSWER.unpack_from(self._buffer)
            end = _ANSWER.size + size
            if len(self._buffer) < end:
                return
            status, value = pickle.loads(self._buffer[_ANSWER.size:end])
            del self._buffer[:end]
            future = self._waiting.popleft()
            if future.done():  # its caller was cancelled
                continue
            if status == "ok":
                future.set_result(value)
            else:
                future.set_exception(value)

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = WorkerDied("a download worker process ended while it had work")
        while self._waiting:
            future = self._waiting.popleft()
            if not future.done():
                future.set_exception(self._lost)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


def serve(sock: socket.socket, limits: ImageLimits, main_pid: int) -> None:
    """A worker process: requests from ``sock`` one at a time, until the main process closes
    its end. An unexpected error is sent back and raised there, not swallowed."""
    init_worker(limits.max_pixels, main_pid)
    with sock, contextlib.suppress(BrokenPipeError, ConnectionResetError):  # main process gone
        while (request := _receive(sock)) is not None:
            (kind, args), body = request
            try:
                value = store(body, *args, limits) if kind == "store" else check_existing(
                    *args, limits)
                answer = ("ok", value)
            except Exception as err:  # a bug: re-raised in the main process
                answer = ("error", err)
            data = pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL)
            sock.sendall(_ANSWER.pack(len(data)) + data)


def _receive(sock: socket.socket) -> tuple[tuple[str, tuple[Any, ...]], bytearray] | None:
    header = _receive_exactly(sock, _REQUEST.size)
    if header is None:
        return None  # the main process closed its end (or is gone): done
    meta_size, body_size = _REQUEST.unpack(header)
    meta = _receive_exactly(sock, meta_size)
    body = _receive_exactly(sock, body_size)
    if meta is None or body is None:
        return None
    return pickle.loads(meta), body


def _receive_exactly(sock: socket.socket, size: int) -> bytearray | None:
    buffer = bytearray(size)
    view = memoryview(buffer)
    received = 0
    while received < size:
        count = sock.recv_into(view[received:])
        if count == 0:
            return None
        received += count
    return buffer


def init_worker(max_pixels: int, main_pid: int) -> None:
    """Worker set-up: PIL's bomb guard at our limit, Ctrl-C left to the main process (which
    shuts the pool down), and an exit when the main process is gone (kill -9)."""
    Image.MAX_IMAGE_PIXELS = max_pixels
    set_up_decode_worker()
    # PIL only warns between 1x and 2x the limit; here anything over the limit is rejected
    warnings.simplefilter("error", Image.DecompressionBombWarning)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_main, args=(main_pid,), daemon=True).start()


def _exit_with_main(main_pid: int) -> None:
    # A killed main process cannot shut the pool down, and the workers would wait for work
    # forever: nothing else tells them. Their parent is the forkserver, which itself lives as
    # long as any worker does, so it is the main process that is watched.
    while True:
        time.sleep(1.0)
        try:
            os.kill(main_pid, 0)
        except ProcessLookupError:
            os._exit(1)


def store(body: bytes | bytearray, folder: str, stem: str, limits: ImageLimits
          ) -> tuple[str | None, int, bool]:
    """Validate (and maybe shrink) ``body``, write it as ``folder/stem.<ext>``.

    Returns ``(reason, 0, False)`` when refused, else ``(None, bytes written, resized)``.
    """
    prepared = prepare_image(body, limits)
    if prepared.data is None:
        return prepared.reason, 0, False
    atomic_write(Path(folder) / f"{stem}.{prepared.extension}", prepared.data)
    return None, len(prepared.data), prepared.resized


def check_existing(path: str, limits: ImageLimits) -> str:
    """An image already on disk: ok from its header, shrunk in place if larger than
    ``max_side``, or deleted if broken (it is then fetched again)."""
    size, reason = check_header(path, limits)
    if size is not None and (limits.max_side is None or max(size) <= limits.max_side):
        return EXISTING_OK
    if reason is None:
        prepared = prepare_image(Path(path).read_bytes(), limits)
        if prepared.data is not None:
            target = Path(path).with_name(f"{Path(path).name.partition('.')[0]}.jpg")
            atomic_write(target, prepared.data)
            if target != Path(path):
                Path(path).unlink()
            return EXISTING_RESIZED
    Path(path).unlink(missing_ok=True)
    return EXISTING_BAD


def atomic_write(path: Path, data: bytes | bytearray) -> None:
    """Write to a temp file beside ``path``, then rename: readers never see half a file."""
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    try:
        with open(tmp, "xb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # no-op after the rename; removes a half-written file
