"""What concurrent uploads may hold at once, so that no number of them takes the server past a
stated ceiling (:func:`memory_ceiling`; docs/how-to/serve.md, "Sharing the server safely"):

- the request bodies being read or answered hold at most as many bytes as :data:`MAX_BODIES`
  full ones (``--max-upload-mb`` each) in all (:class:`BodyBudget`). Each takes its bytes as they
  arrive, so a body that trickles in holds only what it has sent, and keeps no one waiting; one
  whose bytes would pass the budget is refused (503, "send it again"). A body is held at most
  :data:`BODY_COPIES` times while it is parsed (the bytes, the form part or the JSON text, the
  image's bytes);
- their images together decode at most :data:`PIXEL_BUDGET` pixels at once, counted from what
  each image's header claims (read without decoding): the pixels one image may have
  (cnnlab.data.images.MAX_DECODED_PIXELS), so any number of uploads at once takes no more memory
  to decode than the largest one alone (cnnlab.data.images.MAX_IMAGE_MEMORY).

An image that claims more than the budget runs alone; decoding then reduces or refuses it.

The server's process also has large buffers returned to the system as soon as they are freed
(:func:`return_freed_buffers`), or each worker thread would keep its own copy of the last photo's.
"""

from __future__ import annotations

import ctypes
import io
import threading
import warnings
from collections.abc import Callable
from typing import TypeVar

from PIL import Image, UnidentifiedImageError

from cnnlab.data.images import FORMATS, MAX_DECODED_PIXELS, MAX_IMAGE_MEMORY

MAX_BODIES = 16
BODY_COPIES = 3
PIXEL_BUDGET = MAX_DECODED_PIXELS
T = TypeVar("T")
M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter (malloc.h)
OWN_PAGES_FROM = 1024 * 1024  # bytes: a buffer this large or larger gets pages of its own


def return_freed_buffers() -> bool:
    """Have glibc's malloc give every buffer of :data:`OWN_PAGES_FROM` bytes or more pages of its
    own, which go back to the system when it is freed. By default glibc raises that threshold to the
    size of each large buffer freed (up to 32 MB), so a decoded photo's blocks come to be taken from
    the heap of the thread that decodes it, and stay there once freed: with two worker threads the
    server held two photos' worth (measured: 490 MB after three 16-megapixel uploads, 275 MB with
    this). Returns False where the C library has no ``mallopt`` (not glibc): nothing changes there."""
    try:
        return bool(ctypes.CDLL(None).mallopt(M_MMAP_THRESHOLD, OWN_PAGES_FROM))
    except (OSError, AttributeError):
        return False


def memory_ceiling(max_upload_mb: float) -> int:
    """The most memory, in bytes, that uploads under way at once hold above the server at rest."""
    return int(MAX_BODIES * BODY_COPIES * max_upload_mb * 1024 * 1024) + MAX_IMAGE_MEMORY


class BodyBudget:
    """The bytes that request bodies being read or answered hold in all: at most ``total``
    (:data:`MAX_BODIES` bodies of ``max_body`` bytes). A body takes its bytes as they arrive, and
    gives them back when its request has been answered. Only the event loop's thread uses it."""

    def __init__(self, max_body: int, bodies: int = MAX_BODIES) -> None:
        self.total, self.held = bodies * max_body, 0

    def take(self, size: int) -> bool:
        """Hold ``size`` more bytes, if they fit in what is left; False (nothing held) if not."""
        if self.held + size > self.total:
            return False
        self.held += size
        return True

    def give(self, size: int) -> None:
        self.held -= size


def claimed_pixels(data: bytes) -> int:
    """How many pixels the image in ``data`` says it has (its header only is read), 0 when it is
    not an image Pillow opens: decoding then refuses it before allocating anything."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=FORMATS) as image:
                return image.width * image.height
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError, EOFError):
        return 0


class UploadGate:
    """The pixels that images decode at once: :meth:`run` around decoding and answering an image
    (in a worker thread)."""

    def __init__(self, pixels: int = PIXEL_BUDGET) -> None:
        self.pixels, self.pixels_free = pixels, pixels
        self.changed = threading.Condition()

    def run(self, work: Callable[[bytes], T], data: bytes) -> T:
        """``work(data)`` once the pixels ``data`` claims fit in what the other uploads leave."""
        wanted = min(claimed_pixels(data), self.pixels)
        with self.changed:
            self.changed.wait_for(lambda: self.pixels_free >= wanted)
            self.pixels_free -= wanted
        try:
            return work(data)
        finally:
            with self.changed:
                self.pixels_free += wanted
                self.changed.notify_all()
