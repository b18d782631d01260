"""Several worker processes on one port, each listening on a socket of its own.

uvicorn's supervisor hands every worker one shared listening socket, and the event loop that
wakes first accepts every connection waiting: the 16 keep-alive connections of
benchmarks/serve_load.py, opened at once, all went to one of two workers in 2 of its 5 scenarios,
the other worker idle throughout. Here each worker has its own socket in one ``SO_REUSEPORT``
group, and Linux spreads new connections over the group by a hash of their addresses, whatever
each worker is doing. uvicorn's supervisor is kept: it starts the workers, replaces one that
dies, and passes signals on.

Elsewhere (macOS's ``SO_REUSEPORT`` gives every connection to one socket) the workers share
uvicorn's one socket.
"""

from __future__ import annotations

import socket
import sys

import uvicorn
from uvicorn.supervisors import Multiprocess

SPREADS = sys.platform == "linux"  # where SO_REUSEPORT balances a group's connections


def own_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` in the port's ``SO_REUSEPORT`` group, not yet listening:
    the worker it is handed to listens on it (a bound socket that nobody listens on is given no
    connections)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


class SpreadWorkers(Multiprocess):
    """uvicorn's supervisor, each worker started with a socket of its own (:func:`own_socket`).

    The supervisor closes its copy of each socket once the worker has it (multiprocessing hands the
    worker a duplicate when it starts), so a worker that dies takes its socket out of the group
    with it, and new connections go to the others until it is replaced."""

    def __init__(self, config: uvicorn.Config) -> None:
        self.handed: list[socket.socket] = []
        super().__init__(config, sockets=[])

    @property
    def sockets(self) -> list[socket.socket]:
        # uvicorn reads this once for each worker it starts (at first, to replace one that died, on
        # SIGHUP) and starts it before reading it again: the sockets read before are the workers' by now.
        self.close_handed()
        self.handed.append(own_socket(self.config.host, self.config.port))
        return self.handed[-1:]

    @sockets.setter
    def sockets(self, shared: list[socket.socket]) -> None:
        pass  # the one socket uvicorn would share: none is made

    def keep_subprocess_alive(self) -> None:
        self.close_handed()  # every half second, before uvicorn looks for workers that died
        super().keep_subprocess_alive()

    def close_handed(self) -> None:
        for sock in self.handed:
            sock.close()
        self.handed.clear()


def run_workers(config: uvicorn.Config) -> None:
    """Serve ``config.app`` (an import string) with ``config.workers`` processes until a signal stops them."""
    try:
        if SPREADS:
            SpreadWorkers(config).run()
        else:
            Multiprocess(config, sockets=[config.bind_socket()]).run()
    except KeyboardInterrupt:  # as uvicorn.run: a second Ctrl-C while the workers drain
        pass
