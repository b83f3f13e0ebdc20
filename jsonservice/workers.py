"""
C{twistd jsonservice --workers N}: N worker processes serving one listening
TCP socket, under a supervisor.

The supervisor (L{WorkerSupervisor}, the service C{twistd} runs when
C{--workers} is above 1) binds the socket once, before twistd sheds
privileges, and never accepts on it.  It spawns each worker as
C{python -m jsonservice.workers <the same plugin options> --workers=1
--inherit-fd=3}: a real C{twistd -n jsonservice} whose socket is inherited
as file descriptor 3 and adopted with C{reactor.adoptStreamPort}
(L{InheritedPortService}), so a worker runs exactly the code a
single-process server runs (limits, drain, and everything else
C{makeService} wires up).  The kernel hands each new connection to
whichever worker accepts it first.

 - A worker that exits while the supervisor is running is restarted, after
   a delay that doubles (from L{RESTART_DELAY} up to L{MAX_RESTART_DELAY})
   while workers keep dying soon after they start.
 - On SIGTERM (or SIGINT) the supervisor stops restarting, forwards SIGTERM
   to every worker, so each drains gracefully (stops accepting, finishes
   its in-flight requests within C{--shutdown-grace}), waits for them up to
   C{shutdown_grace + }L{KILL_MARGIN} seconds, then SIGKILLs the rest.
 - Workers run in their own process group (a terminal's Ctrl-C reaches
   only the supervisor, which forwards it once) and exit, gracefully, when
   their standard input, a pipe from the supervisor, closes: a supervisor
   killed with SIGKILL leaves no orphan serving the port.
 - Each worker writes its log events as JSON records to its standard
   output; the supervisor re-publishes them into its own log with
   C{log_system} set to C{worker-PID}, so C{twistd}'s log options apply to
   the workers' events too.  Raw standard error lines are logged as well.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from twisted.application.service import Service
from twisted.internet import error, fdesc
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import FileLogObserver, Logger, eventAsJSON, eventFromJSON
from twisted.python.failure import Failure

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall, IListeningPort, IProcessTransport, IProtocolFactory

__all__ = [
    "INHERITED_FD",
    "KILL_MARGIN",
    "MAX_RESTART_DELAY",
    "RESTART_DELAY",
    "InheritedPortService",
    "TCPAddress",
    "WorkerSupervisor",
    "main",
    "parse_tcp_description",
    "worker_log_observer",
]

#: The file descriptor a worker finds the shared listening socket on.
INHERITED_FD: Final = 3
#: First delay before restarting a worker that died soon after starting.
RESTART_DELAY: Final = 0.5
#: Longest delay between restarts of a worker that keeps dying.
MAX_RESTART_DELAY: Final = 10.0
#: A worker that lived this long before dying is restarted after L{RESTART_DELAY} again.
STABLE_AFTER: Final = 10.0
#: On shutdown, seconds past C{shutdown_grace} before the remaining workers are killed.
#: A worker's drain takes up to C{shutdown_grace} plus 5 s to cut off peers that never read.
KILL_MARGIN: Final = 7.0
#: Separates the JSON log records a worker writes (twisted.logger's default).
_RECORD_SEPARATOR: Final = "\x1e"

_log = Logger(namespace="jsonservice.workers")


@dataclass(frozen=True)
class TCPAddress:
    """Where the workers' shared socket listens."""

    host: str
    port: int
    backlog: int = 1024

    @property
    def family(self) -> socket.AddressFamily:
        """C{AF_INET6} for an IPv6 host, else C{AF_INET}."""
        return socket.AF_INET6 if ":" in self.host else socket.AF_INET


def _split_description(description: str) -> list[str]:
    """Split an endpoint description on unescaped colons, unescaping."""
    parts: list[str] = []
    current: list[str] = []
    chars = iter(description)
    for char in chars:
        if char == "\\":
            current.append(next(chars, ""))
        elif char == ":":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def parse_tcp_description(description: str) -> TCPAddress:
    """
    The address of a C{tcp:}/C{tcp6:} server endpoint description, such as
    C{tcp:8080:interface=127.0.0.1}: the only kind C{--workers} serves.

    @raise ValueError: for any other kind of description, or a bad one.
    """
    kind, *args = _split_description(description)
    if kind not in ("tcp", "tcp6"):
        raise ValueError(
            f"--workers shares one TCP socket: it needs --port NUMBER or a tcp:/tcp6: description, "
            f"not {description!r} (run one instance per endpoint instead)"
        )
    positional = [arg for arg in args if "=" not in arg]
    keywords = dict(arg.split("=", 1) for arg in args if "=" in arg)
    unknown = set(keywords) - {"port", "interface", "backlog"}
    if unknown or len(positional) > 3:
        raise ValueError(f"{description!r}: unexpected arguments for --workers")
    names = ["port", "backlog", "interface"]
    for name, value in zip(names, positional, strict=False):
        if name in keywords:
            raise ValueError(f"{description!r}: {name} given twice")
        keywords[name] = value
    if "port" not in keywords:
        raise ValueError(f"{description!r}: no port")
    default_host = "::" if kind == "tcp6" else ""
    try:
        port = int(keywords["port"])
        backlog = int(keywords.get("backlog", "1024"))
    except ValueError:
        raise ValueError(f"{description!r}: port and backlog are numbers") from None
    return TCPAddress(keywords.get("interface", default_host), port, backlog)


def worker_log_observer() -> FileLogObserver:
    """
    The log observer of a worker (C{twistd --logger}): JSON records on the
    real standard output, read back by the supervisor.
    """
    out = sys.__stdout__
    assert out is not None
    return FileLogObserver(out, lambda event: _RECORD_SEPARATOR + eventAsJSON(event) + "\n")


class _ParentWatch:
    """
    Reads a worker's standard input, a pipe from the supervisor; at its
    end (the supervisor is gone) stops the reactor, which drains.
    """

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        fdesc.setNonBlocking(0)

    def fileno(self) -> int:
        return 0

    def logPrefix(self) -> str:
        return "supervisor-pipe"

    def doRead(self) -> Any:
        try:
            data = os.read(0, 4096)
        except BlockingIOError:
            return None
        except OSError:
            return error.ConnectionLost()
        return None if data else error.ConnectionDone()

    def connectionLost(self, reason: Failure) -> None:
        self.reactor.removeReader(self)
        _log.warn("Supervisor gone (standard input closed): stopping")
        if self.reactor.running:
            self.reactor.stop()


class InheritedPortService(Service):
    """
    Serves C{factory} on an inherited listening socket (C{--inherit-fd}),
    closing it on stop so the other workers take the new connections.
    Also watches standard input, when C{watch_parent}, to exit with the
    supervisor.
    """

    def __init__(
        self,
        fd: int,
        factory: IProtocolFactory,
        *,
        reactor: Any = None,
        watch_parent: bool = True,
    ) -> None:
        self.fd = fd
        self.factory = factory
        self.reactor = reactor
        self.watch_parent = watch_parent
        self.port: IListeningPort | None = None
        self._watch: _ParentWatch | None = None

    def startService(self) -> None:
        """Adopt the socket (and start watching the supervisor)."""
        super().startService()  # type: ignore[no-untyped-call]
        reactor = self.reactor or _global_reactor()
        with socket.socket(fileno=os.dup(self.fd)) as probe:
            family = probe.family
        # Twisted adopts the socket as it is; a blocking one would hang in accept().
        fdesc.setNonBlocking(self.fd)
        try:
            self.port = reactor.adoptStreamPort(self.fd, family, self.factory)
        finally:
            # adoptStreamPort works on a duplicate; the original is ours to close.
            os.close(self.fd)
        _log.info(
            "Worker {pid} serving on {address} (inherited socket)",
            pid=os.getpid(),
            address=self.port.getHost() if self.port is not None else None,
        )
        if self.watch_parent:
            self._watch = _ParentWatch(reactor)
            reactor.addReader(self._watch)

    def stopService(self) -> Deferred[None]:
        """Stop accepting on the shared socket."""
        super().stopService()  # type: ignore[no-untyped-call]
        if self._watch is not None:
            (self.reactor or _global_reactor()).removeReader(self._watch)
            self._watch = None
        if self.port is None:
            return succeed(None)
        port: Any = self.port
        self.port = None
        stopped: Deferred[None] = maybeDeferred(port.stopListening)
        return stopped


def _global_reactor() -> Any:
    from twisted.internet import reactor

    return reactor


class _WorkerProcess(ProcessProtocol):
    """One worker, as its supervisor sees it: log relay and exit."""

    def __init__(self, supervisor: WorkerSupervisor, slot: int) -> None:
        self.supervisor = supervisor
        self.slot = slot
        self.pid: int | None = None
        self.started = 0.0
        self.ended: Deferred[None] = Deferred()
        self._out = ""
        self._err = b""

    def connectionMade(self) -> None:
        transport: IProcessTransport = self.transport  # type: ignore[assignment]
        self.pid = transport.pid
        self.started = self.supervisor.clock.seconds()

    def outReceived(self, data: bytes) -> None:
        # One record a line: the separator, then JSON (which escapes newlines).
        *lines, self._out = (self._out + data.decode("utf-8", "replace")).split("\n")
        for line in lines:
            self._relay(line)

    def errReceived(self, data: bytes) -> None:
        *lines, self._err = (self._err + data).split(b"\n")
        for line in lines:
            self._raw(line.decode("utf-8", "replace"))

    def _relay(self, line: str) -> None:
        if not line.startswith(_RECORD_SEPARATOR):
            self._raw(line)
            return
        try:
            event = eventFromJSON(line[1:])
        except ValueError:
            self._raw(line)
            return
        event["log_system"] = f"worker-{self.pid}"
        event["worker_pid"] = self.pid
        from twisted.logger import globalLogPublisher

        globalLogPublisher(event)

    def _raw(self, text: str) -> None:
        if text.strip():
            _log.warn("worker-{pid}: {text}", pid=self.pid, text=text.rstrip())

    def processEnded(self, reason: Failure) -> None:
        if self._out:
            self._relay(self._out)
        if self._err:
            self._raw(self._err.decode("utf-8", "replace"))
        self._out, self._err = "", b""
        self.supervisor._worker_ended(self, reason)
        self.ended.callback(None)


class WorkerSupervisor(Service):
    """
    Runs C{count} worker processes on one listening TCP socket; restarts
    those that die; stops them all gracefully.

    @param address: where to listen.
    @param plugin_args: the C{twistd jsonservice} options the workers get
        (the supervisor's own, as given on the command line).
    @param count: how many workers.
    @param shutdown_grace: the workers' C{--shutdown-grace}: how long a
        stopping supervisor waits (plus L{KILL_MARGIN}) before SIGKILL.
    @param reactor: the reactor (default: the global one).
    @param executable: the Python that runs the workers.
    @param on_worker_ended: called with the pid of each worker that ended.
    """

    def __init__(
        self,
        address: TCPAddress,
        plugin_args: Sequence[str],
        count: int,
        *,
        shutdown_grace: float,
        reactor: Any = None,
        executable: str = sys.executable,
        on_worker_ended: Callable[[int], None] | None = None,
    ) -> None:
        self.address = address
        self.plugin_args = list(plugin_args)
        self.count = count
        self.shutdown_grace = shutdown_grace
        self.reactor = reactor
        self.executable = executable
        self.on_worker_ended = on_worker_ended
        self.socket: socket.socket | None = None
        self.workers: dict[int, _WorkerProcess] = {}
        self._restarts: dict[int, IDelayedCall] = {}
        self._delays: dict[int, float] = {}
        self._stopping = False

    @property
    def clock(self) -> Any:
        """The reactor in use."""
        return self.reactor or _global_reactor()

    def privilegedStartService(self) -> None:
        """Bind the shared socket (before twistd sheds privileges)."""
        super().privilegedStartService()  # type: ignore[no-untyped-call]
        self._bind()

    def _bind(self) -> None:
        if self.socket is not None:
            return
        sock = socket.socket(self.address.family, socket.SOCK_STREAM)
        try:
            if os.name == "posix":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.address.host, self.address.port))
            sock.listen(self.address.backlog)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self.socket = sock
        host, port = sock.getsockname()[:2]
        _log.info(
            "Supervisor {pid} listening on {host}:{port} for {count} workers",
            pid=os.getpid(),
            host=host,
            port=port,
            count=self.count,
        )

    def startService(self) -> None:
        """Spawn the workers."""
        super().startService()  # type: ignore[no-untyped-call]
        self._stopping = False
        self._bind()
        for slot in range(self.count):
            self._spawn(slot)

    def worker_command(self) -> list[str]:
        """The command line of a worker process."""
        return [
            self.executable,
            "-m",
            "jsonservice.workers",
            *self.plugin_args,
            "--workers=1",
            f"--inherit-fd={INHERITED_FD}",
        ]

    def _spawn(self, slot: int) -> None:
        self._restarts.pop(slot, None)
        if self._stopping or self.socket is None:
            return
        worker = _WorkerProcess(self, slot)
        command = self.worker_command()
        self.clock.spawnProcess(
            worker,
            command[0],
            command,
            env=dict(os.environ),
            path=os.getcwd(),
            childFDs={0: "w", 1: "r", 2: "r", INHERITED_FD: self.socket.fileno()},
        )
        assert worker.pid is not None
        self.workers[worker.pid] = worker
        _log.info("Started worker {slot} (pid {pid})", slot=slot, pid=worker.pid)

    def _worker_ended(self, worker: _WorkerProcess, reason: Failure) -> None:
        if worker.pid is not None:
            self.workers.pop(worker.pid, None)
            if self.on_worker_ended is not None:
                self.on_worker_ended(worker.pid)
        status = reason.value
        code = getattr(status, "exitCode", None)
        sig = getattr(status, "signal", None)
        if self._stopping:
            _log.info("Worker {pid} stopped (exit {code}, signal {sig})", pid=worker.pid, code=code, sig=sig)
            return
        lived = self.clock.seconds() - worker.started
        delay = self._delays.get(worker.slot, RESTART_DELAY)
        delay = RESTART_DELAY if lived >= STABLE_AFTER else delay
        self._delays[worker.slot] = min(delay * 2, MAX_RESTART_DELAY)
        _log.warn(
            "Worker {pid} died (exit {code}, signal {sig}) after {lived:.1f}s; restarting in {delay}s",
            pid=worker.pid,
            code=code,
            sig=sig,
            lived=lived,
            delay=delay,
        )
        self._restarts[worker.slot] = self.clock.callLater(delay, self._spawn, worker.slot)

    def stopService(self) -> Deferred[None]:
        """
        Stop restarting; SIGTERM every worker so it drains; SIGKILL those
        still running C{shutdown_grace + KILL_MARGIN} seconds later.
        """
        super().stopService()  # type: ignore[no-untyped-call]
        self._stopping = True
        for call in self._restarts.values():
            if call.active():
                call.cancel()
        self._restarts.clear()
        if self.socket is not None:
            # The workers hold their own copies until they stop listening.
            self.socket.close()
            self.socket = None
        workers = list(self.workers.values())
        if not workers:
            return succeed(None)
        _log.info("Stopping {count} worker(s)", count=len(workers))
        for worker in workers:
            self._signal(worker, "TERM")
        deadline = self.clock.callLater(self.shutdown_grace + KILL_MARGIN, self._kill, workers)
        done: Deferred[None] = Deferred()
        remaining = [len(workers)]

        def one_ended(_: None) -> None:
            remaining[0] -= 1
            if remaining[0] == 0:
                if deadline.active():
                    deadline.cancel()
                done.callback(None)

        for worker in workers:
            worker.ended.addCallback(one_ended)
        return done

    def _kill(self, workers: list[_WorkerProcess]) -> None:
        for worker in workers:
            if not worker.ended.called:
                _log.warn("Worker {pid} still running after the grace: killing it", pid=worker.pid)
                self._signal(worker, "KILL")

    @staticmethod
    def _signal(worker: _WorkerProcess, name: str) -> None:
        transport: Any = worker.transport
        with contextlib.suppress(error.ProcessExitedAlready):
            transport.signalProcess(name)


def main(argv: Sequence[str] | None = None) -> None:
    """
    A worker process: C{twistd -n jsonservice} with the given plugin
    options (which include C{--inherit-fd}), logging JSON records to
    standard output for the supervisor.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if hasattr(os, "setpgid"):
        # Ctrl-C in a terminal reaches the supervisor only; it forwards SIGTERM.
        os.setpgid(0, 0)
    sys.argv = [
        "twistd",
        "--nodaemon",
        "--pidfile=",
        f"--logger={__name__}.worker_log_observer",
        "jsonservice",
        *args,
    ]
    from twisted.scripts.twistd import run

    run()


if __name__ == "__main__":
    main()
