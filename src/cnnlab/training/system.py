"""How many CPU threads to use (every usable core, less those other cnnlab trainings hold), keeping
freed memory, and how much memory is free for a network.

With another process busy on one of two cores, two PyTorch threads took 10.2 s for an epoch
that one thread ran in 5.8 s here: each step waits for the thread that shares its core. So a
training registers the threads it runs (:func:`running_training`), and the default for the next
one is the usable cores less those (at least one). Other programs' load does not count: the load
average remembers a job that has just ended, and a shell command sampled at the wrong moment
cost a long run half its threads; ``--threads`` decides where the machine is shared otherwise.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import torch

from cnnlab.errors import CnnlabError

try:
    import fcntl
except ImportError:  # Windows: trainings do not register; each takes every core
    fcntl = None


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity), else all of them."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def pick_threads(requested: int | None = None) -> int:
    """``requested`` if given, else every usable core less the threads other cnnlab trainings on
    this machine run (:func:`running_training`), and at least one."""
    if requested is not None:
        return requested
    return max(1, usable_cores() - sum(other_trainings().values()))


def trainings_folder() -> Path:
    """Where running trainings register: one file per process, in this user's temporary folder."""
    return Path(tempfile.gettempdir()) / f"cnnlab-{os.getuid() if hasattr(os, 'getuid') else 'user'}" / "trainings"


def other_trainings() -> dict[int, int]:
    """``{pid: threads}`` of the other cnnlab trainings running now. A file whose process has
    ended (its lock let go, however it ended) is removed."""
    found = {}
    for entry in sorted(trainings_folder().glob("*.threads")) if fcntl else []:
        with contextlib.suppress(OSError, ValueError):
            pid = int(entry.stem)
            if pid == os.getpid():
                continue
            with entry.open("r+") as file:
                try:
                    fcntl.flock(file, fcntl.LOCK_SH | fcntl.LOCK_NB)
                except BlockingIOError:  # its training holds it: running
                    found[pid] = max(1, int(file.read().strip() or 1))
                    continue
                entry.unlink()
    return found


@contextlib.contextmanager
def running_training(threads: int) -> Iterator[None]:
    """Register this process as a training running ``threads`` threads, while inside: the file
    is locked as long as it runs, so a crash leaves nothing that counts."""
    if fcntl is None:
        yield
        return
    path = trainings_folder() / f"{os.getpid()}.threads"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        file = path.open("w")
    except OSError:  # an unwritable temporary folder: the training runs unregistered
        yield
        return
    with file:
        fcntl.flock(file, fcntl.LOCK_EX)
        file.write(f"{threads}\n")
        file.flush()
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                path.unlink()


def select_device(name: str) -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; an explicit device must be available."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise CnnlabError("--device cuda: no CUDA GPU is available to this PyTorch build; use --device cpu")
    if name == "mps" and not torch.backends.mps.is_available():
        raise CnnlabError("--device mps: Apple's Metal backend is not available here; use --device cpu")
    return torch.device(name)


def set_threads(threads: int | None) -> int:
    """Use ``threads`` intra-op threads, default every core no other cnnlab training runs on (trick 5);
    returns the count."""
    threads = pick_threads(threads)
    torch.set_num_threads(threads)
    return threads


def machine_description() -> str:
    """What this machine is, for a results file: CPU model, cores, accelerator, torch build.

    Example: ``"AMD EPYC 7B13, 2 cores, no GPU, torch 2.13.0+cpu"``.
    """
    cpu = next((line.split(":", 1)[1].strip() for line in _read_lines("/proc/cpuinfo")
                if line.startswith("model name")), None) or os.uname().machine
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, {usable_cores()} cores, {gpu}, torch {torch.__version__}"


def _read_lines(path: str) -> list[str]:
    """The lines of a /proc or /sys file, or none off Linux (or where it cannot be read)."""
    try:
        return Path(path).read_text().splitlines()
    except OSError:
        return []


def free_memory(device: torch.device | None = None) -> int | None:
    """Bytes free for a network on ``device`` (default: the CPU's memory), or None where cnnlab
    cannot tell (a Mac's GPU; a system with neither /proc nor ``sysconf``): then nothing is refused.

    On Linux: the kernel's estimate of what can be had without swapping (``MemAvailable``), or
    less where this process's control group (a container's limit, a systemd slice) leaves less
    room. On a CUDA GPU: what the driver says is free on it.
    """
    if device is not None and device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device is not None and device.type != "cpu":
        return None
    known = [room for room in (_available_memory(), *_cgroup_rooms()) if room is not None]
    return min(known) if known else None


def _available_memory() -> int | None:
    """``MemAvailable`` of /proc/meminfo, else the free pages ``sysconf`` counts, else None."""
    for line in _read_lines("/proc/meminfo"):
        name, _, value = line.partition(":")
        if name == "MemAvailable" and value.split()[0].isdigit():
            return int(value.split()[0]) * 1024  # in kB
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):  # not Linux: macOS has no SC_AVPHYS_PAGES, Windows no sysconf
        return None


# cgroup v2 and v1: the folder of the memory controller, and the names of its limit and usage files.
_CGROUPS = {"v2": ("/sys/fs/cgroup", "memory.max", "memory.current", "inactive_file"),
            "v1": ("/sys/fs/cgroup/memory", "memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")}


def _cgroup_rooms() -> list[int]:
    """The room left under each memory limit of this process's control group and the groups above
    it: the limit less what the group uses, not counting file cache the kernel can drop
    (``inactive_file``, as Kubernetes reckons a container's working set)."""
    rooms = []
    for line in _read_lines("/proc/self/cgroup"):
        hierarchy, controllers, path = [*line.split(":", 2), "", ""][:3]
        version = "v2" if hierarchy == "0" and not controllers else "v1" if "memory" in controllers.split(",") else ""
        if not version:
            continue
        root, limit_name, usage_name, cache_name = _CGROUPS[version]
        folder = Path(root) / path.lstrip("/")
        for group in (folder, *folder.parents):
            if not group.is_relative_to(root) or ".." in group.parts:
                break
            limit, usage = _read_number(group / limit_name), _read_number(group / usage_name)
            if limit is not None and usage is not None:
                rooms.append(max(0, limit - max(0, usage - _stat(group, cache_name))))
    return rooms


def _stat(group: Path, name: str) -> int:
    """One count of a control group's ``memory.stat`` (0 if it has none)."""
    for line in _read_lines(str(group / "memory.stat")):
        key, _, value = line.partition(" ")
        if key == name and value.strip().isdigit():
            return int(value)
    return 0


def _read_number(path: Path) -> int | None:
    """A control-group file's number, or None when it is missing or says ``max`` (no limit)."""
    lines = _read_lines(str(path))
    return int(lines[0]) if lines and lines[0].strip().isdigit() else None


def threads_label(threads: int) -> str:
    """``"1 thread"``, ``"2 threads"``: for the epoch line."""
    return f"{threads} thread" + ("s" if threads != 1 else "")


def keep_freed_memory() -> bool:
    """Trick 8: ask glibc's malloc to keep freed memory for reuse instead of handing it back.

    By default glibc hands large freed blocks (a batch's activations and gradients) back to the
    kernel, unmapping them or trimming the top of its heap, so a step can page-fault its buffers
    in afresh: zero-filling max-pool's gradient took 12% of an ``accurate`` step here. glibc
    raises its thresholds as it sees large blocks freed, but not far enough for every buffer.
    Serving blocks up to 32 MiB from the heap and trimming it only past 1 GiB took five epochs
    of ``accurate`` from 32.2 s to 29.5 s, with the same weights (``fast`` gained nothing).
    The cost: the process keeps memory it has used. PyTorch's CPU tuning guide gets the same
    from jemalloc or tcmalloc. Returns whether it applied (glibc only).
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (macOS, Windows, musl): nothing to do
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # from <malloc.h>
    return bool(mallopt(m_mmap_threshold, 32 << 20)) and bool(mallopt(m_trim_threshold, 1 << 30))


def start_import(module: str) -> threading.Thread:
    """Import ``module`` on a second thread; join it before first use.

    Trick 6: torch.optim's first use imports torch._dynamo, 1.4 s of Python here; imported this
    way it loads while the main thread reads and normalises the data (gzip and torch release the GIL).
    """
    thread = threading.Thread(target=importlib.import_module, args=(module,), daemon=True)
    thread.start()
    return thread
