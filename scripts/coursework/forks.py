"""A fork server for the grader's submission processes (:class:`.behaviour.Student`).

Starting a submission's process costs the imports of the chapter's setup (torch, SciPy,
matplotlib, the package: about 3 s of CPU), and a grading run starts one per submission and
exercise. On Linux a fork server makes those imports once: a process started with the
submission's environment that forks, for each submission, a child which then becomes exactly
what ``python -c CODE`` was (a session of its own, the resource limits, the grading folder as
its working folder, the environment asked for, stdin and stdout the grader's pipes, stderr
discarded) and runs ``CODE`` in a fresh ``__main__`` namespace. Each submission still runs in a
process of its own, forked from a state in which nothing but those imports has happened.

:func:`forked` returns None where forking is not possible (no ``os.pidfd_open``, the server
fails to start or to answer, or ``PMI_GRADER_FORK=0``): the caller then starts the process
afresh. One server per grader process and environment (pytest's name of the running test
aside); it ends when the grader closes it or ends.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: what the server imports once (a module missing here is imported by the child, as before)
PRELOAD = ("numpy", "scipy.stats", "scipy.spatial.distance", "scipy.cluster.hierarchy", "torch",
           "matplotlib.pyplot", "IPython.display", "pmi_tutorial", "pmi_tutorial.display",
           "pmi_tutorial.profiles", "pmi_tutorial.plotting", "pmi_tutorial.fingerprint", "pmi_tutorial.stats",
           "pmi_tutorial.attacks", "pmi_tutorial.training", "pmi_tutorial.experiments")

SERVER = "import sys\nfrom scripts.coursework.forks import serve\nserve(int(sys.argv[1]))\n"


def apply_limits(limits: list[tuple[str, int]]) -> None:
    """``resource.setrlimit`` for each ``(RLIMIT_NAME, value)`` (soft and hard), where allowed."""
    import resource

    for name, value in limits:
        try:
            resource.setrlimit(getattr(resource, name), (value, value))
        except (ValueError, OSError):
            pass


def serve(fd: int) -> None:
    """The server's loop (run by :data:`SERVER`): a request ``{cwd, env, limits, code}`` with the
    child's stdin and stdout as file descriptors; forks the child, answers ``{pid}``."""
    import importlib
    import signal
    import socket

    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a module that fails here fails in the child, as before
            pass
    sock = socket.socket(fileno=fd)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the children are reaped by the system
    while True:
        try:
            msg, fds, _, _ = socket.recv_fds(sock, 2**20, 2)
        except OSError:
            break
        if not msg or len(fds) != 2:
            break
        req = json.loads(msg)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                sock.close()
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                os.setsid()
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(fds[0], 0)
                os.dup2(fds[1], 1)
                os.dup2(null, 2)
                for f in (*fds, null):
                    os.close(f)
                os.chdir(req["cwd"])
                os.environ.clear()
                os.environ.update(req["env"])
                apply_limits(req["limits"])
                sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115 - fd 0, the pipe
                exec(compile(req["code"], "<string>", "exec"), {"__name__": "__main__"})  # noqa: S102
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:  # noqa: BLE001 - the child ends here whatever happened
                code = 1
            finally:
                os._exit(code)
        for f in fds:
            os.close(f)
        sock.send(json.dumps({"pid": pid}).encode())


class Forked:
    """A child of the server, as the grader uses a ``Popen``: ``pid``, ``stdin``, ``stdout``,
    ``poll()``, ``wait()`` (not the grader's child: its exit is seen through a pidfd, its exit
    status is not, ``returncode`` is -1 once it has ended)."""

    def __init__(self, pid: int, stdin, stdout):
        self.pid, self.stdin, self.stdout, self.returncode = pid, stdin, stdout, None
        try:
            self._pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            self._pidfd, self.returncode = None, -1

    def _ended(self, timeout):
        if self.returncode is None and select.select([self._pidfd], [], [], timeout)[0]:
            os.close(self._pidfd)
            self.returncode = -1
        return self.returncode

    def poll(self):
        return self._ended(0)

    def wait(self):
        return self._ended(None)


class Server:
    """The fork server for one environment, owned by the process that started it."""

    def __init__(self, env: dict):
        import socket

        self.key, self.owner = _key(env), os.getpid()
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.proc = subprocess.Popen([sys.executable, "-c", SERVER, str(theirs.fileno())], pass_fds=[theirs.fileno()],
                                     env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True, cwd=ROOT)
        theirs.close()
        self.sock.settimeout(120)  # the first answer waits for the imports

    def fork(self, env: dict, cwd: str, code: str, limits: list[tuple[str, int]]) -> Forked:
        import socket

        stdin_r, stdin_w = os.pipe()
        stdout_r, stdout_w = os.pipe()
        try:
            req = {"cwd": cwd, "env": env, "limits": limits, "code": code}
            socket.send_fds(self.sock, [json.dumps(req).encode()], [stdin_r, stdout_w])
            pid = json.loads(self.sock.recv(4096))["pid"]
        except BaseException:
            for f in (stdin_w, stdout_r):
                os.close(f)
            raise
        finally:
            os.close(stdin_r)
            os.close(stdout_w)
        return Forked(pid, open(stdin_w, "w", encoding="utf-8"), open(stdout_r, encoding="utf-8"))  # noqa: SIM115

    def close(self) -> None:
        self.sock.close()  # the server's loop ends on the closed socket
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _key(env: dict) -> dict:
    """The environment the server's imports saw, less pytest's name of the running test (each
    child gets the whole environment it is asked for)."""
    return {k: v for k, v in env.items() if k != "PYTEST_CURRENT_TEST"}


_server: Server | None = None


def forked(env: dict, cwd: str, code: str, limits: list[tuple[str, int]]) -> Forked | None:
    """``python -c code`` with ``env``, in ``cwd``, under ``limits``, in a session of its own,
    forked from this process's server for ``env`` (started, or restarted for a new environment,
    as needed); None where forking is not possible."""
    global _server
    if not hasattr(os, "pidfd_open") or not hasattr(os, "fork") or os.environ.get("PMI_GRADER_FORK") == "0":
        return None
    if _server is not None and (_server.owner != os.getpid() or _server.key != _key(env)):
        close()
    try:
        if _server is None:
            _server = Server(env)
        return _server.fork(env, cwd, code, limits)
    except (OSError, ValueError, KeyError):  # the server died or cannot start: start afresh
        close()
        return None


def close() -> None:
    """End this process's server (a server inherited from another process is left to it)."""
    global _server
    if _server is not None and _server.owner == os.getpid():
        _server.close()
    _server = None


atexit.register(lambda: close())
