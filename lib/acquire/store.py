"""The download's worker processes: validate, shrink and write one image each, fed from the
event loop.

In: a downloaded body, the folder and file stem it goes to, and ``ImageLimits``; or the path of
an image already on disk. Out: the image written atomically as ``<folder>/<stem>.<ext>``
(``lib.common.fileio.write_bytes``), or the reason it was refused
(``lib.acquire.resize``); for an image on disk, whether it is fine, was shrunk in place, or was
broken and deleted.

``StoreWorkers`` runs one process per core and talks to each over a socket pair from the event
loop itself: a request is a small header on the socket, its body is copied into one of the
worker's shared-memory slots (``BodySlot``: never pickled, never through the kernel's socket
buffers), answers come back in order. No threads in the main process, so no GIL handoffs
between the event loop and a pool's feeder threads: about a quarter of the main process's CPU
per image that ``concurrent.futures.ProcessPoolExecutor`` costs.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import mmap
import os
import pickle
import signal
import socket
import struct
import tempfile
import warnings
from collections.abc import AsyncIterator, Callable
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import Any

from PIL import Image

from lib.acquire.resize import ImageLimits, check_header, prepare_image
from lib.common.fileio import write_bytes
from lib.common.pools import set_up_decode_worker

EXISTING_OK, EXISTING_RESIZED, EXISTING_BAD = "ok", "resized", "bad"

# length of the pickled (kind, args), length of the body, the slot holding the body
_REQUEST = struct.Struct("!IQB")
_ANSWER = struct.Struct("!I")  # length of the pickled ("ok", value) or ("error", exception)
# One being processed, two waiting. With one waiting, a core idled 2-3% of the time on the
# benchmark with no delay: the event loop, waiting for the other core, was late to refill a
# worker; with two, 0.5-1% (as the ceiling's plain pool), and 1-2% more images/s.
_SLOTS_PER_WORKER = 3
_JOIN_TIMEOUT_S = 60.0
_GROWTH_BYTES = 1 << 20  # a body slot grows in steps of this


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
        self._slots: list[list[BodySlot]] = []  # per worker
        self._processes = []
        self._lanes: list[_Lane] = []
        self._free: asyncio.Queue[_Lane] | None = None
        try:
            for _ in range(count):
                ours, theirs = socket.socketpair()
                self._sockets.append(ours)
                slots = [BodySlot.create() for _ in range(_SLOTS_PER_WORKER)]
                self._slots.append(slots)
                process = context.Process(target=serve, args=(theirs, limits),
                                          daemon=True, name="download-worker")
                process.start()  # the first one waits for the forkserver's imports
                theirs.close()
                self._processes.append(process)
                socket.send_fds(ours, [b"slots"], [slot.fd for slot in slots])
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
        free: asyncio.Queue[_Lane] = asyncio.Queue()
        self._free = free
        for sock, slots in zip(self._sockets, self._slots, strict=True):
            _, lane = await loop.create_connection(
                lambda slots=slots: _Lane(slots, free.put_nowait), sock=sock)
            self._lanes.append(lane)
            for _ in slots:
                free.put_nowait(lane)
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
        # A lane comes back to the queue when its worker answers, not when this caller stops
        # waiting: a cancelled caller's body stays in its slot until the worker is done with it.
        lane = await self._free.get()
        return await lane.call(kind, args, body)

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
        for slots in self._slots:
            for slot in slots:
                slot.close()
        self._slots = []


class BodySlot:
    """A shared-memory buffer (``memfd``) one request's body travels in, grown as needed.

    The main process copies a body in with ``put``; the worker, which got the same file
    descriptor, copies it out with ``take`` (remapping when the main process has grown it).
    A slot is reused only after the worker answered the request that used it."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._map: mmap.mmap | None = None

    @classmethod
    def create(cls) -> BodySlot:
        if hasattr(os, "memfd_create"):  # Linux: memory that no path names
            return cls(os.memfd_create("download-body", os.MFD_CLOEXEC))
        with tempfile.TemporaryFile() as handle:  # elsewhere: an unlinked temp file
            return cls(os.dup(handle.fileno()))

    def put(self, body: bytes) -> None:
        if len(body) > self._mapped():
            # in whole MiB: a few growths, then every photo fits; never above max_bytes + 1 MiB
            os.ftruncate(self.fd, -(-len(body) // _GROWTH_BYTES) * _GROWTH_BYTES)
            self._remap()
        assert self._map is not None
        self._map[:len(body)] = body

    def take(self, size: int) -> bytes:
        if size > self._mapped():
            self._remap()
        assert self._map is not None or size == 0
        return self._map[:size] if self._map is not None else b""

    def _mapped(self) -> int:
        return len(self._map) if self._map is not None else 0

    def _remap(self) -> None:
        if self._map is not None:
            self._map.close()
        self._map = mmap.mmap(self.fd, os.fstat(self.fd).st_size)

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None
        os.close(self.fd)


class _Lane(asyncio.Protocol):
    """The event loop's end of one worker's socket: requests go out in order, their bodies in
    the worker's slots in turn; answers come back in the same order, resolve the oldest waiting
    future and hand the lane back (``on_answer``) for the next request."""

    def __init__(self, slots: list[BodySlot], on_answer: Callable[[_Lane], None]) -> None:
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._waiting: collections.deque[asyncio.Future[Any]] = collections.deque()
        self._lost: Exception | None = None
        self._slots = slots
        self._sent = 0  # requests so far: request n uses slot n % len(slots)
        self._on_answer = on_answer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def call(self, kind: str, args: tuple[Any, ...], body: bytes) -> asyncio.Future[Any]:
        if self._lost is not None:
            raise self._lost
        assert self._transport is not None
        # at most len(slots) requests are unanswered (the lane is queued once per slot), and
        # answers come in order, so this slot's previous request has been answered
        slot = self._sent % len(self._slots)
        self._sent += 1
        if body:
            self._slots[slot].put(body)
        meta = pickle.dumps((kind, args), protocol=pickle.HIGHEST_PROTOCOL)
        self._transport.write(_REQUEST.pack(len(meta), len(body), slot) + meta)
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
            self._on_answer(self)
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
            self._on_answer(self)  # whoever takes the lane next gets WorkerDied, not a hang
            if not future.done():
                future.set_exception(self._lost)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


def serve(sock: socket.socket, limits: ImageLimits) -> None:
    """A worker process: requests from ``sock`` one at a time, until the main process closes
    its end, or dies (kill -9): the kernel closes the end then, and the worker reads the end
    of its socket, or fails to send its answer, and exits. An unexpected error is sent back
    and raised there, not swallowed."""
    init_worker(limits.max_pixels)
    with sock, contextlib.suppress(BrokenPipeError, ConnectionResetError):  # main process gone
        _, fds, _, _ = socket.recv_fds(sock, 16, _SLOTS_PER_WORKER)
        slots = [BodySlot(fd) for fd in fds]
        while (request := _receive(sock, slots)) is not None:
            (kind, args), body = request
            try:
                value = store(body, *args, limits) if kind == "store" else check_existing(
                    *args, limits)
                answer = ("ok", value)
            except Exception as err:  # a bug: re-raised in the main process
                answer = ("error", err)
            data = pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL)
            sock.sendall(_ANSWER.pack(len(data)) + data)


def _receive(sock: socket.socket, slots: list[BodySlot]
             ) -> tuple[tuple[str, tuple[Any, ...]], bytes] | None:
    header = _receive_exactly(sock, _REQUEST.size)
    if header is None:
        return None  # the main process closed its end (or is gone): done
    meta_size, body_size, slot = _REQUEST.unpack(header)
    meta = _receive_exactly(sock, meta_size)
    if meta is None:
        return None
    return pickle.loads(meta), slots[slot].take(body_size)


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


def init_worker(max_pixels: int) -> None:
    """Worker set-up: PIL's bomb guard at our limit, Ctrl-C left to the main process (which
    shuts the workers down). No watchdog thread for a killed main process: its socket closing
    is enough (``serve``), and a single-threaded process keeps glibc's lock-free malloc."""
    Image.MAX_IMAGE_PIXELS = max_pixels
    set_up_decode_worker()
    # PIL only warns between 1x and 2x the limit; here anything over the limit is rejected
    warnings.simplefilter("error", Image.DecompressionBombWarning)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def store(body: bytes | bytearray, folder: str, stem: str, limits: ImageLimits
          ) -> tuple[str | None, int, bool]:
    """Validate (and maybe shrink) ``body``, write it as ``folder/stem.<ext>``.

    Returns ``(reason, 0, False)`` when refused, else ``(None, bytes written, resized)``.
    """
    prepared = prepare_image(body, limits)
    if prepared.data is None:
        return prepared.reason, 0, False
    write_bytes(Path(folder) / f"{stem}.{prepared.extension}", prepared.data)
    return None, len(prepared.data), prepared.resized


def check_existing(path: str, limits: ImageLimits) -> str:
    """An image already on disk: ok from its header and last bytes; shrunk in place if larger
    than ``max_side``; decoded in full when its end does not show it whole (kept if it decodes,
    as a download would keep it); deleted if broken (it is then fetched again)."""
    size, reason, complete = check_header(path, limits)
    if complete and (limits.max_side is None or max(size) <= limits.max_side):
        return EXISTING_OK
    if reason is None:
        prepared = prepare_image(Path(path).read_bytes(), limits)
        if prepared.data is not None and not prepared.resized:
            return EXISTING_OK  # whole after all (e.g. bytes after the end marker)
        if prepared.data is not None:
            target = Path(path).with_name(f"{Path(path).name.partition('.')[0]}.jpg")
            write_bytes(target, prepared.data)
            if target != Path(path):
                Path(path).unlink()
            return EXISTING_RESIZED
    Path(path).unlink(missing_ok=True)
    return EXISTING_BAD


class ExecutorWorkers:
    """The same interface as ``StoreWorkers`` on a plain ``ProcessPoolExecutor``: bodies are
    pickled to the workers, outcomes pickled back."""

    def __init__(self, *, count: int, limits: ImageLimits, context: BaseContext) -> None:
        from concurrent.futures import ProcessPoolExecutor

        self.count = count
        self._limits = limits
        self._executor = ProcessPoolExecutor(count, mp_context=context,
                                             initializer=_init_executor_worker,
                                             initargs=(limits.max_pixels,))
        # every worker started now, before the event loop: a worker is only started when none
        # is idle, and each of these holds its worker a moment
        self.pids = sorted({f.result() for f in [self._executor.submit(_started)
                                                  for _ in range(count)]})

    @contextlib.asynccontextmanager
    async def connected(self) -> AsyncIterator[ExecutorWorkers]:
        yield self

    async def store(self, body: bytes, folder: Path, stem: str) -> tuple[str | None, int, bool]:
        return await asyncio.wrap_future(
            self._executor.submit(store, body, str(folder), stem, self._limits))

    async def check_existing(self, path: str) -> str:
        return await asyncio.wrap_future(
            self._executor.submit(check_existing, path, self._limits))

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


def _started() -> int:
    import time

    time.sleep(0.05)
    return os.getpid()


def _init_executor_worker(max_pixels: int) -> None:
    from lib.common.oskit import exit_with_parent

    exit_with_parent()
    init_worker(max_pixels)
