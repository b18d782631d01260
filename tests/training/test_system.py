import os

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

