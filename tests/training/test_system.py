import os

import torch

from cnnlab.training import system


def test_explicit_threads_win():
    assert system.pick_threads(3) == 3


def test_default_is_between_one_and_the_usable_cores():
    assert 1 <= system.pick_threads() <= system.usable_cores() <= (os.cpu_count() or 1)


def test_busy_cores_reduce_the_default(monkeypatch):
    monkeypatch.setattr(system, "usable_cores", lambda: 4)
    monkeypatch.setattr(system.os, "getloadavg", lambda: (9.0, 9.0, 9.0))
    monkeypatch.setattr(system, "busy_cores", lambda: 1.2)
    assert system.pick_threads() == 3
    monkeypatch.setattr(system, "busy_cores", lambda: 7.0)
    assert system.pick_threads() == 1


def test_a_momentary_blip_does_not_cost_threads(monkeypatch):
    monkeypatch.setattr(system, "usable_cores", lambda: 2)
    monkeypatch.setattr(system, "busy_cores", lambda: 1.0)  # busy during the sample...
    monkeypatch.setattr(system.os, "getloadavg", lambda: (0.1, 0.1, 0.1))  # ...but not over the last minute
    assert system.pick_threads() == 2


def test_busy_cores_sees_a_spinning_process():
    import multiprocessing as mp

    def spin(seconds):
        import time

        end = time.time() + seconds
        while time.time() < end:
            pass

    ctx = mp.get_context("fork")
    proc = ctx.Process(target=spin, args=(2.0,))
    proc.start()
    try:
        assert system.busy_cores(0.5) >= 0.7
    finally:
        proc.join()


def test_threads_label():
    assert system.threads_label(1) == "1 thread"
    assert system.threads_label(2) == "2 threads"


def test_keep_freed_memory_is_a_no_op_without_glibc(monkeypatch):
    def no_libc(name):
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(system.ctypes, "CDLL", no_libc)
    assert system.keep_freed_memory() is False


def test_keep_freed_memory_raises_mallocs_thresholds(monkeypatch):
    calls = []

    class FakeLibc:
        def mallopt(self, option, value):
            calls.append((option, value))
            return 1

    monkeypatch.setattr(system.ctypes, "CDLL", lambda name: FakeLibc())
    assert system.keep_freed_memory() is True
    assert calls == [(-3, 32 << 20), (-1, 1 << 30)]  # M_MMAP_THRESHOLD, then M_TRIM_THRESHOLD



def fake_files(monkeypatch, files: dict[str, str]) -> None:
    """/proc and /sys as ``files`` says: any other path reads as missing, as off Linux."""
    monkeypatch.setattr(system, "_read_lines", lambda path: files[path].splitlines() if path in files else [])


GB = 10**9


def test_free_memory_is_memavailable_without_a_limit(monkeypatch):
    fake_files(monkeypatch, {"/proc/meminfo": "MemTotal: 16000000 kB\nMemAvailable: 8000000 kB\n",
                             "/proc/self/cgroup": "0::/user.slice\n",
                             "/sys/fs/cgroup/user.slice/memory.max": "max\n",
                             "/sys/fs/cgroup/user.slice/memory.current": "123456\n"})
    assert system.free_memory() == 8_000_000 * 1024


def test_a_container_limit_below_memavailable_wins_and_its_file_cache_counts_as_free(monkeypatch):
    fake_files(monkeypatch, {"/proc/meminfo": "MemAvailable: 64000000 kB\n",
                             "/proc/self/cgroup": "0::/box\n",
                             "/sys/fs/cgroup/box/memory.max": f"{4 * GB}\n",
                             "/sys/fs/cgroup/box/memory.current": f"{3 * GB}\n",
                             "/sys/fs/cgroup/box/memory.stat": f"anon 100\ninactive_file {GB}\n"})
    assert system.free_memory() == 2 * GB  # 4 GB limit, 3 GB used of which 1 GB droppable cache


def test_a_cgroup_v1_limit_on_a_parent_group_counts(monkeypatch):
    fake_files(monkeypatch, {"/proc/meminfo": "MemAvailable: 64000000 kB\n",
                             "/proc/self/cgroup": "4:memory:/jobs/one\n1:cpu:/\n",
                             "/sys/fs/cgroup/memory/jobs/one/memory.limit_in_bytes": "9223372036854771712\n",
                             "/sys/fs/cgroup/memory/jobs/one/memory.usage_in_bytes": f"{GB}\n",
                             "/sys/fs/cgroup/memory/jobs/memory.limit_in_bytes": f"{3 * GB}\n",
                             "/sys/fs/cgroup/memory/jobs/memory.usage_in_bytes": f"{2 * GB}\n"})
    assert system.free_memory() == GB


def test_without_proc_it_asks_sysconf_and_else_says_it_cannot_tell(monkeypatch):
    fake_files(monkeypatch, {})
    monkeypatch.setattr(system.os, "sysconf", lambda name: {"SC_AVPHYS_PAGES": 1000, "SC_PAGE_SIZE": 4096}[name])
    assert system.free_memory() == 4_096_000

    def no_such_name(name):
        raise ValueError(f"unrecognized configuration name {name}")  # macOS has no SC_AVPHYS_PAGES

    monkeypatch.setattr(system.os, "sysconf", no_such_name)
    assert system.free_memory() is None


def test_free_memory_on_this_machine_and_on_a_device_it_cannot_read():
    free = system.free_memory()
    assert free is None or free > 0
    assert system.free_memory(torch.device("mps")) is None
