"""A decoded PIL image's pixels as a numpy array, without copying them.

In: a loaded PIL image. Out: a read-only uint8 array over the image's own memory: H x W for
mode L, H x W x 4 for mode RGB (Pillow keeps RGB as four bytes per pixel, the fourth unused),
or a copy (``np.asarray``: H x W x 3 for RGB) where no view can be had: other modes, or a large
image whose rows lie in several of Pillow's memory blocks.

Why: ``np.asarray(image)`` packs the four bytes per pixel into three through Pillow's raw
encoder, in 64 KiB pieces that are then joined. For a downloaded photo shrunk to 256 px that
is about 0.1 ms of its 2.4 ms of decoding, shrinking and encoding; the view costs a few
microseconds. It reads Pillow's Arrow export (``Image.__arrow_c_array__``, Pillow >= 11.2),
whose structs are the Arrow C data interface, a stable ABI:
https://arrow.apache.org/docs/format/CDataInterface.html
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np
from PIL import Image


class _ArrowSchema(ctypes.Structure):
    pass


_ArrowSchema._fields_ = [
    ("format", ctypes.c_char_p), ("name", ctypes.c_char_p), ("metadata", ctypes.c_char_p),
    ("flags", ctypes.c_int64), ("n_children", ctypes.c_int64),
    ("children", ctypes.POINTER(ctypes.POINTER(_ArrowSchema))),
    ("dictionary", ctypes.c_void_p), ("release", ctypes.c_void_p),
    ("private_data", ctypes.c_void_p),
]


class _ArrowArray(ctypes.Structure):
    pass


_ArrowArray._fields_ = [
    ("length", ctypes.c_int64), ("null_count", ctypes.c_int64), ("offset", ctypes.c_int64),
    ("n_buffers", ctypes.c_int64), ("n_children", ctypes.c_int64),
    ("buffers", ctypes.POINTER(ctypes.c_void_p)),
    ("children", ctypes.POINTER(ctypes.POINTER(_ArrowArray))),
    ("dictionary", ctypes.c_void_p), ("release", ctypes.c_void_p),
    ("private_data", ctypes.c_void_p),
]

_capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_pointer.restype = ctypes.c_void_p
_capsule_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]

UINT8 = b"C"  # Arrow's format strings: one uint8 per pixel...
FOUR_UINT8 = b"+w:4"  # ...or a fixed-size list of four, with a uint8 child
_BANDS = {"L": (UINT8, 1), "RGB": (FOUR_UINT8, 4)}


def pixels_of(image: Image.Image) -> np.ndarray:
    """``image``'s pixels (loaded, mode L or RGB for a view): a view where possible, else a
    copy. Keep the result read-only; the view keeps the image's memory alive while it lives."""
    view = _view(image)
    return view if view is not None else np.asarray(image)


def _view(image: Image.Image) -> np.ndarray | None:
    if image.mode not in _BANDS:
        return None
    expected_format, bands = _BANDS[image.mode]
    try:
        capsules = image.__arrow_c_array__()
    except ValueError:  # "rows are not contiguous": the image spans several memory blocks
        return None
    schema = _ArrowSchema.from_address(_capsule_pointer(capsules[0], b"arrow_schema"))
    array = _ArrowArray.from_address(_capsule_pointer(capsules[1], b"arrow_array"))
    data = array
    if schema.format != expected_format:
        return None
    if bands > 1:  # the bytes are in the list's one child
        if (array.n_children != 1 or schema.n_children != 1
                or schema.children[0].contents.format != UINT8):
            return None
        data = array.children[0].contents
    width, height = image.size
    # anything but one plain buffer of width * height pixels: not what this expects, copy
    if (array.length != width * height or array.offset or data.offset or data.n_buffers != 2
            or not data.buffers[1]):
        return None
    shape = (height, width, bands) if bands > 1 else (height, width)
    return np.asarray(_Exported(capsules, shape, data.buffers[1]))


class _Exported:
    """What numpy's array wraps: the address and shape, and the capsules, which keep Pillow's
    export (and so the image memory) alive until the array and its views are gone."""

    def __init__(self, capsules: tuple[Any, Any], shape: tuple[int, ...], address: int) -> None:
        self._capsules = capsules
        self.__array_interface__ = {"version": 3, "shape": shape, "typestr": "|u1",
                                    "data": (address, True)}  # True: read-only
