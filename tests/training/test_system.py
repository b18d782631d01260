import os

import torch

from cnnlab.training import system


def test_explicit_threads_win():
    assert system.pick_threads(3) == 3


def test_default_is_between_one_and_the_usable_cores():
    assert 1 <= system.pick_threads() <= system.usable_cores() <= (os.cpu_count() or 1)


def test_the_default_is_every_usable_core_when_no_other_training_runs(monkeypatch, tmp_path):
    monkeypatch.setattr(system, "usable_cores", lambda: 4)
    monkeypatch.setattr(system.tempfile, "gettempdir", lambda: str(tmp_path))
    monkeypatch.setattr(system.os, "getloadavg", lambda: (9.0, 9.0, 9.0))  # other programs' load does not count
    assert system.pick_threads() == 4


def test_another_running_training_keeps_its_threads(monkeypatch, tmp_path):
    """A training in another process registers its threads; the next one takes the cores left, and
    all of them again once it has ended, however it ended (its lock goes with its process)."""
    import subprocess
    import sys

    monkeypatch.setattr(system, "usable_cores", lambda: 4)
    monkeypatch.setattr(system.tempfile, "gettempdir", lambda: str(tmp_path))
    code = ("import sys, tempfile; from cnnlab.training import system; tempfile.gettempdir = lambda: sys.argv[1]\n"
            "with system.running_training(3):\n    print('in', flush=True); sys.stdin.readline()")
    other = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline() == "in\n"
        assert system.other_trainings() == {other.pid: 3}
        assert system.pick_threads() == 1
        with system.running_training(1):  # this process's own registration is not another's
            assert system.pick_threads() == 1
    finally:
        other.kill()
        other.wait()
    assert system.pick_threads() == 4
    assert list(system.trainings_folder().iterdir()) == []  # the killed one's file is cleared away


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
