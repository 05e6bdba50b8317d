"""The download's worker processes: validate, shrink and write one image each.

In: a downloaded body, the folder and file stem it goes to, and ``ImageLimits``; or the path of
an image already on disk. Out: the image written atomically as ``<folder>/<stem>.<ext>``
(``lib.common.fileio.write_bytes``), or the reason it was refused (``lib.acquire.resize``); for
an image on disk, whether it is fine, was shrunk in place, or was broken and deleted.

``StoreWorkers`` runs them in a ``concurrent.futures.ProcessPoolExecutor``, one process per
core, awaited from the event loop: bodies are pickled to the workers, outcomes back.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from pathlib import Path

from PIL import Image

from lib.acquire.resize import ImageLimits, check_header, prepare_image
from lib.common.fileio import write_bytes
from lib.common.pools import set_up_decode_worker

EXISTING_OK, EXISTING_RESIZED, EXISTING_BAD = "ok", "resized", "bad"


class StoreWorkers:
    """``count`` worker processes that store bodies and check images on disk.

    Started by the constructor (synchronously, before the event loop), used from coroutines,
    ended by ``close()``, which lets each finish what it was sent. A worker that dies (killed,
    or crashed in a decoder) fails every call then waiting with ``BrokenProcessPool``.
    """

    def __init__(self, *, count: int, limits: ImageLimits, context: BaseContext) -> None:
        self.count = count
        self._limits = limits
        # Each worker exits when the far end of this pipe closes: the main process has ended,
        # even by kill -9, which the executor's own workers would wait out forever.
        main_alive, self._main_alive = context.Pipe(duplex=False)
        self._executor = ProcessPoolExecutor(count, mp_context=context, initializer=init_worker,
                                             initargs=(limits.max_pixels, main_alive))
        # Every worker started now: the executor starts one only when none is idle, and each
        # of these holds its worker a moment. Later starts would stall the event loop.
        started = [self._executor.submit(_started) for _ in range(count)]
        self.pids = sorted({future.result() for future in started})

    async def store(self, body: bytes, folder: Path, stem: str) -> tuple[str | None, int, bool]:
        """``store(body, folder, stem)`` in a worker."""
        return await asyncio.wrap_future(
            self._executor.submit(store, body, str(folder), stem, self._limits))

    async def check_existing(self, path: str) -> str:
        """``check_existing(path)`` in a worker."""
        return await asyncio.wrap_future(
            self._executor.submit(check_existing, path, self._limits))

    def close(self) -> None:
        """End the workers once they have finished the images they were sent; the images not
        yet sent are dropped."""
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._main_alive.close()


def _started() -> int:
    time.sleep(0.05)  # long enough for the next submit to find this worker busy
    return os.getpid()


def init_worker(max_pixels: int, main_alive: Connection) -> None:
    """Worker set-up: an exit once ``main_alive`` reads the end (the main process is gone),
    PIL's bomb guard at our limit, Ctrl-C left to the main process (which shuts the workers
    down)."""
    threading.Thread(target=_exit_at_end, args=(main_alive,), daemon=True,
                     name="exit-with-main").start()
    Image.MAX_IMAGE_PIXELS = max_pixels
    set_up_decode_worker()
    # PIL only warns between 1x and 2x the limit; here anything over the limit is rejected
    warnings.simplefilter("error", Image.DecompressionBombWarning)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _exit_at_end(main_alive: Connection) -> None:
    main_alive.poll(None)  # nothing is ever sent: readable means the other end closed
    os._exit(1)  # an image being written is lost whole: the next run fetches it


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

