"""Child processes of the launcher: how each is started (tied to the launcher's life), a free port, a port taken,
waiting for one, and stopping them. Free of Django, like the launcher (``chatsite/stack.py``) that uses it."""

from __future__ import annotations

import errno
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def _die_with_parent() -> None:
    """Linux: a child gets SIGTERM when the launcher dies, even by SIGKILL, so nothing is left orphaned. The
    signal follows the *thread* that started the child: start children from a thread that outlives them (the
    launcher's main thread; in tests, not an executor thread that ends before the child should)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def popen(args, **kwargs) -> subprocess.Popen:
    kwargs.setdefault("preexec_fn", _die_with_parent if sys.platform == "linux" else None)
    return subprocess.Popen(args, **kwargs)


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_in_use(bind_address: str, port: int) -> bool:
    """Whether another program listens on ``port`` at ``bind_address`` (Daphne would fail to listen and be
    restarted forever, while a readiness check found the other program answering). Another reason binding fails
    (a privileged port, an address this machine does not have) is raised as the ``OSError`` it is."""
    host = bind_address.strip("[]")  # Daphne takes an IPv6 address in brackets too
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Daphne binds: a closing port is free
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise
    return False


def wait_for_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 60.0) -> None:
    """Block until something accepts on ``port`` (or the process dies)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on port {port} after {timeout} s")


def stop(*procs: subprocess.Popen | None, timeout: float = 10.0) -> None:
    """Terminate processes, then kill the ones that linger."""
    live = [p for p in procs if p is not None and p.poll() is None]
    for p in live:
        p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for p in live:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
