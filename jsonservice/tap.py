"""
The twistd plugin's options and service: C{twistd -n jsonservice --port 8080}.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import sys
from collections.abc import Callable
from typing import Any, Final

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IService, MultiService
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger
from twisted.python import usage

from . import __version__
from ._mypyc import compiled
from .limits import LIMIT_HELP, Limits
from .metrics import MULTIPROCESS_VARIABLE
from .server import JSONServerFactory, JSONServerService
from .service import JSONService

__all__ = ["DEFAULT_PORT", "Options", "load_service", "makeService"]

DEFAULT_PORT = 8080

_DEFAULTS = Limits()


def _option_name(field: str) -> str:
    return field.replace("_", "-")


class Options(usage.Options):
    """
    Options of C{twistd jsonservice}.  Every limit of L{Limits} is an option
    too (C{--max-line-length}, C{--request-timeout}, ...).
    """

    synopsis = "[options]"
    longdesc = (
        "Serve newline-delimited JSON and JSON-RPC 2.0 on any Twisted endpoint, "
        "and with --http the same over HTTP and WebSocket, with an explorer page. "
        "Without --service it serves the demo: echo(value), ping(), notify_me(text, delay), and "
        '{"message": "Hello from server"} for plain messages.'
    )

    optParameters: list[list[Any]] = [  # type: ignore[assignment]
        [
            "port",
            "p",
            None,
            f"port number (binds --interface) or endpoint description [default: {DEFAULT_PORT}]",
        ],
        ["interface", "i", "127.0.0.1", "interface a bare --port number binds"],
        [
            "auth-token-file",
            None,
            None,
            "require connections to call rpc.authenticate with the token in this file first",
        ],
        [
            "metrics",
            None,
            None,
            "serve Prometheus metrics over HTTP on this endpoint, e.g. tcp:9100:interface=127.0.0.1",
        ],
        [
            "service",
            "s",
            None,
            "the service to serve: package.module:attr, a JSONService or a callable returning one",
        ],
        [
            "pubsub",
            None,
            None,
            "carry topic events (rpc.subscribe, service.publish) through redis://host:port/db,"
            " across workers and instances [default: in this process]",
        ],
        [
            "workers",
            "w",
            "1",
            "worker processes sharing one listening TCP socket, under a supervisor that restarts them",
        ],
        [
            "inherit-fd",
            None,
            None,
            "(internal, used by --workers) serve on this inherited listening TCP socket descriptor",
        ],
    ] + [
        [_option_name(field.name), None, str(getattr(_DEFAULTS, field.name)), LIMIT_HELP[field.name]]
        for field in dataclasses.fields(Limits)
        if field.name != "call_timeout"
    ]

    optFlags: list[list[Any]] = [
        ["log-requests", None, "log every request (method, outcome, duration); costs per message"],
    ]

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self["listen"] = []
        self["http"] = []

    def opt_http(self, description: str) -> None:
        """HTTP endpoint (repeatable): POST /rpc, WebSocket /ws, GET /openrpc.json, the explorer at GET /."""
        self["http"].append(description)

    def opt_listen(self, description: str) -> None:
        """An endpoint description to listen on, e.g. tcp:8080:interface=0.0.0.0 (repeatable)."""
        self["listen"].append(description)

    opt_l = opt_listen

    def parseOptions(self, options: Any = None) -> None:
        """Parse, keeping the arguments as given: C{--workers} passes them on to its workers."""
        self["argv"] = list(sys.argv[1:] if options is None else options)
        super().parseOptions(options)  # type: ignore[no-untyped-call]

    def postOptions(self) -> None:
        """Work out the endpoints, limits and service; refuse bad values."""
        endpoints = list(self["listen"])
        port = self["port"]
        if port is not None or not endpoints:
            endpoints.insert(0, port_description(port or str(DEFAULT_PORT), self["interface"]))
        for description in endpoints:
            check_endpoint(description)
        self["endpoints"] = endpoints
        for description in self["http"]:
            check_endpoint(description)
        if self["http"]:
            try:
                import autobahn  # noqa: F401
            except ImportError:
                raise usage.UsageError(
                    "--http needs autobahn (the WebSocket at /ws): install jsonservice[web]"
                ) from None
        values: dict[str, Any] = {}
        for field in dataclasses.fields(Limits):
            if field.name == "call_timeout":
                continue
            text = self[_option_name(field.name)]
            kind = int if isinstance(getattr(_DEFAULTS, field.name), int) else float
            try:
                values[field.name] = kind(text)
            except ValueError:
                raise usage.UsageError(f"--{_option_name(field.name)} takes a number, not {text!r}") from None
        try:
            self["limits"] = Limits(**values)
        except (TypeError, ValueError) as exc:
            raise usage.UsageError(str(exc)) from None
        self["auth_token"] = read_token(self["auth-token-file"]) if self["auth-token-file"] else None
        if self["metrics"] is not None:
            try:
                import prometheus_client  # noqa: F401
            except ImportError:
                raise usage.UsageError(
                    "--metrics needs prometheus-client: install jsonservice[metrics]"
                ) from None
        if self["pubsub"] is not None:
            from .pubsub import make_backend

            try:
                make_backend(self["pubsub"])  # checked now; connected when serving
            except ValueError as exc:
                raise usage.UsageError(f"--pubsub: {exc}") from None
        try:
            self["service_object"] = load_service(self["service"])
        except (ImportError, AttributeError, TypeError, ValueError) as exc:
            raise usage.UsageError(f"--service {self['service']}: {exc}") from None
        self._post_workers()

    def _post_workers(self) -> None:
        """Check C{--workers} (one TCP endpoint only) and C{--inherit-fd}."""
        from .workers import parse_tcp_description

        for name in ("workers", "inherit-fd"):
            text = self[name]
            if text is not None and (not str(text).isdigit() or (name == "workers" and int(text) < 1)):
                raise usage.UsageError(f"--{name} takes a whole number (at least 1), not {text!r}")
        self["workers"] = int(self["workers"])
        if self["inherit-fd"] is not None:
            self["inherit-fd"] = int(self["inherit-fd"])
            return
        if self["workers"] > 1:
            if self["http"]:
                # The workers share one inherited TCP socket; an --http
                # listener would be bound by each of them.
                raise usage.UsageError("--http cannot be combined with --workers (yet): run one process")
            if len(self["endpoints"]) != 1:
                raise usage.UsageError(
                    "--workers serves exactly one TCP endpoint: give one --port or --listen"
                )
            try:
                self["worker_address"] = parse_tcp_description(self["endpoints"][0])
            except ValueError as exc:
                raise usage.UsageError(str(exc)) from None


def _without_option(argv: list[str], name: str) -> list[str]:
    """C{argv} without option C{name} (C{--name VALUE} or C{--name=VALUE})."""
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == name:
            skip = True
        elif not arg.startswith(name + "="):
            kept.append(arg)
    return kept


def _serve_worker_metrics(endpoint: str, parent: MultiService) -> Callable[[int], None]:
    """
    The supervisor's side of C{--metrics} with C{--workers}: a directory for
    the workers' files (its path in the environment they inherit), the
    page serving their sum, and the directory removed on stop.

    @return: what to call with the pid of a worker that ended.
    """
    import shutil
    import tempfile

    from twisted.internet import reactor
    from twisted.web.server import Site

    from .metrics import SupervisorMetrics

    directory = tempfile.mkdtemp(prefix="jsonservice-metrics-")
    os.environ[MULTIPROCESS_VARIABLE] = directory
    metrics = SupervisorMetrics(directory)
    page = StreamServerEndpointService(serverFromString(reactor, endpoint), Site(metrics.resource()))
    page._raiseSynchronously = True
    page.setServiceParent(parent)
    reactor.addSystemEventTrigger("after", "shutdown", shutil.rmtree, directory, True)
    return metrics.worker_ended


def _record_worker_metrics(factory: JSONServerFactory, parent: MultiService) -> None:
    """A worker's side: record requests, and write the gauges every second."""
    from twisted.application.internet import TimerService

    from .metrics import PrometheusMetrics, WorkerGauges

    metrics = PrometheusMetrics(multiprocess=True)
    metrics.watch(factory)
    gauges = WorkerGauges(metrics)
    TimerService(1.0, gauges.update).setServiceParent(parent)


def check_endpoint(description: str) -> None:
    """
    Refuse a server endpoint description that cannot be parsed, with a
    one-line usage error instead of a traceback when twistd starts.

    @raise usage.UsageError: the description is not one Twisted knows.
    """
    if description.startswith("systemd:"):
        return  # parsed against the descriptors systemd passes, at start
    try:
        serverFromString(_PARSE_ONLY, description)
    except (ValueError, TypeError) as exc:
        hint = ""
        if isinstance(exc, TypeError) or ("\\:" not in description and description.count(":") > 3):
            hint = " (escape colons inside a value, interface=\\:\\:1, and quote it in a shell)"
        raise usage.UsageError(f"endpoint {description!r}: {exc}{hint}") from None
    except ImportError as exc:
        raise usage.UsageError(
            f"endpoint {description!r} needs {exc.name}: install jsonservice[tls]"
        ) from None
    except OSError as exc:  # a certificate or key file that cannot be read
        raise usage.UsageError(f"endpoint {description!r}: {exc.strerror}: {exc.filename}") from None


#: Endpoint parsers only keep the reactor they are given: none is needed to check one.
_PARSE_ONLY: Final = object()

#: The listen backlog of C{--port NUMBER}: Twisted's default of 50 makes a
#: client connecting quickly stall 1 s on every 51st connect (the kernel caps
#: it at net.core.somaxconn).  A C{--listen} description sets its own.
LISTEN_BACKLOG: Final = 1024


def port_description(port: str, interface: str) -> str:
    """
    An endpoint description for C{--port}: a bare number binds
    C{interface}; anything else is already a description.
    """
    if not port.isdigit():
        return port
    escaped = interface.replace("\\", "\\\\").replace(":", "\\:")
    kind = "tcp6" if ":" in interface else "tcp"
    return f"{kind}:{port}:interface={escaped}:backlog={LISTEN_BACKLOG}"


def _warn_if_descriptors_short(max_connections: int) -> None:
    """
    Warn when C{max_connections} exceeds what the process may open: past
    its file-descriptor limit, clients are reset by the kernel instead of
    getting the -32001 line.
    """
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):  # not on this platform
        return
    if soft != resource.RLIM_INFINITY and max_connections > soft - 32:
        Logger(namespace="jsonservice.server").warn(
            "--max-connections {wanted} exceeds what this process may open ({soft} file descriptors):"
            " raise the limit (ulimit -n, LimitNOFILE=) or lower --max-connections",
            wanted=max_connections,
            soft=soft,
        )


def read_token(path: str) -> bytes:
    """
    Read an authentication token: the file's content, surrounding
    whitespace stripped.

    @raise usage.UsageError: unreadable or empty.
    """
    try:
        with open(path, "rb") as file:
            token = file.read().strip()
    except OSError as exc:
        raise usage.UsageError(f"--auth-token-file: {exc.strerror}: {path}") from None
    if not token:
        raise usage.UsageError(f"--auth-token-file: {path} is empty")
    return token


def load_service(spec: str | None) -> JSONService:
    """
    Load C{package.module:attr} (importable from the current directory): a
    L{JSONService}, or a callable returning one.  L{None} gives the demo.
    """
    if spec is None:
        from .demo import make_demo_service

        return make_demo_service()
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError("expected package.module:attr")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not isinstance(obj, JSONService) and callable(obj):
        obj = obj()
    if not isinstance(obj, JSONService):
        raise TypeError(f"{spec} is {type(obj).__name__}, not a JSONService or a callable returning one")
    return obj


def _core_kind() -> str:
    return "compiled (mypyc)" if compiled() else "pure-Python"


def makeService(options: Options) -> IService:
    """Build the service twistd runs: listeners plus the drain on stop."""
    from twisted.internet import reactor

    if options["workers"] > 1 and options["inherit-fd"] is None:
        from .workers import WorkerSupervisor

        supervisor = MultiService()
        if options["pubsub"] in (None, "local"):
            Logger(namespace="jsonservice.server").warn(
                "--workers without --pubsub redis://...: an event published on one worker"
                " reaches only the subscribers connected to that worker"
            )
        worker_args, ended = list(options["argv"]), None
        if options["metrics"] is not None:
            # The workers record into files the supervisor sums and serves.
            worker_args = _without_option(worker_args, "--metrics")
            ended = _serve_worker_metrics(options["metrics"], supervisor)
        WorkerSupervisor(
            options["worker_address"],
            worker_args,
            options["workers"],
            shutdown_grace=options["limits"].shutdown_grace,
            on_worker_ended=ended,
        ).setServiceParent(supervisor)  # type: ignore[no-untyped-call]
        return supervisor
    _warn_if_descriptors_short(options["limits"].max_connections)
    Logger(namespace="jsonservice.server").info(
        "jsonservice {version}, {core} core", version=__version__, core=_core_kind()
    )
    factory = JSONServerFactory(
        options["service_object"],
        limits=options["limits"],
        auth_token=options["auth_token"],
        log_requests=bool(options["log-requests"]),
        pubsub=options["pubsub"],
    )
    top = MultiService()
    if options["inherit-fd"] is not None and os.environ.get(MULTIPROCESS_VARIABLE):
        _record_worker_metrics(factory, top)
    if options["metrics"] is not None:
        from twisted.web.server import Site

        from .metrics import PrometheusMetrics

        metrics = PrometheusMetrics()
        metrics.watch(factory)
        page = StreamServerEndpointService(
            serverFromString(reactor, options["metrics"]), Site(metrics.resource())
        )
        page._raiseSynchronously = True
        page.setServiceParent(top)
    # Added first, so stopped last: the ports close before the drain starts.
    JSONServerService(factory).setServiceParent(top)  # type: ignore[no-untyped-call]
    if options["inherit-fd"] is not None:
        # A --workers worker: serve on the supervisor's socket instead.
        from .workers import InheritedPortService

        InheritedPortService(options["inherit-fd"], factory).setServiceParent(top)  # type: ignore[no-untyped-call]
    for description in options["endpoints"] if options["inherit-fd"] is None else []:
        listener = StreamServerEndpointService(serverFromString(reactor, description), factory)
        listener._raiseSynchronously = True
        listener.setServiceParent(top)
    if options["http"]:
        from .web import make_site

        site = make_site(factory)
        for description in options["http"]:
            web = StreamServerEndpointService(serverFromString(reactor, description), site)
            web._raiseSynchronously = True
            web.setServiceParent(top)
    return top
