"""What concurrent uploads may hold at once, so that no number of them takes the server past a
stated ceiling (:func:`memory_ceiling`; docs/how-to/serve.md, "Sharing the server safely"):

- the request bodies being read or answered hold at most as many bytes as :data:`MAX_BODIES`
  full ones (``--max-upload-mb`` each) in all (:class:`BodyBudget`). Each takes its bytes as they
  arrive, so a body that trickles in holds only what it has sent, and keeps no one waiting; one
  whose bytes would pass the budget is refused (503, "send it again"). A body is held at most
  :data:`BODY_COPIES` times while it is parsed (the bytes, the form part or the JSON text, the
  image's bytes);
- their images decode one at a time in each worker process (cnnlab.serving.answers), so any
  number of uploads at once takes no more memory to decode than the largest one alone
  (cnnlab.data.images.MAX_IMAGE_MEMORY) in each.

Decoding on one thread per process also keeps what malloc holds once a photo is answered small:
no other thread's heap keeps a copy of the last photo's buffers (measured: a worker held 3 MB
more after three 16-megapixel uploads than before them).
"""

from __future__ import annotations

from cnnlab.data.images import MAX_IMAGE_MEMORY

MAX_BODIES = 16
BODY_COPIES = 3


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
