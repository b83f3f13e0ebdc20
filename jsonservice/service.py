"""
L{JSONService}: the registry of JSON-RPC methods and the plain-message
handler, with signature binding and dispatch.

A service knows nothing of connections or bytes: L{JSONService.dispatch}
takes a method name and params and returns a value or a L{Deferred}
(or raises L{RPCError}).  The protocol does the rest.
"""

from __future__ import annotations

import inspect
import secrets
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, overload

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from .errors import InternalError, InvalidParams, InvalidRequest, MethodNotFound, RPCError
from .jsonrpc import Id
from .pubsub import EVENT_METHOD, SUBSCRIBE_METHOD, UNSUBSCRIBE_METHOD, Backend, PubSub, SubscribeCheck
from .responders import general_responder, positional_responder
from .typed import ParamConverter, resolve_hints
from .typed_responders import rich_result_classes, typed_responder

if TYPE_CHECKING:
    from twisted.internet.interfaces import IAddress

    from .protocol import JSONProtocol

__all__ = ["CallContext", "Handler", "JSONService", "Responder", "internal_error"]

F = TypeVar("F", bound=Callable[..., Any])

#: A handler wrapped for the connection core: C{respond(params, id, owner)}
#: checks C{params} (raising L{InvalidParams}), calls the handler (with a
#: L{CallContext} built from C{owner}, the connection, when it asked for
#: one) and returns its value or a L{Deferred}.
Responder = Callable[[Any, Any, Any], Any]

_log = Logger(namespace="jsonservice")


class CallContext:
    """
    What a handler registered with C{context=True} receives as its first
    argument: the connection the request came on.

    @ivar protocol: the L{JSONProtocol} of the connection; use it to call
        or notify the peer back.
    @ivar request_id: the id of the request (L{None} for a plain message
        or a request with id null; L{NO_ID<jsonservice.jsonrpc.NO_ID>} for
        a notification).
    @ivar method: the method name, or L{None} for a plain message.
    """

    __slots__ = ("method", "protocol", "request_id")

    def __init__(self, protocol: JSONProtocol, request_id: Any, method: str | None) -> None:
        self.protocol = protocol
        self.request_id = request_id
        self.method = method

    @property
    def peer(self) -> IAddress:
        """The peer's address (as the transport reports it)."""
        return self.protocol.transport.getPeer()  # type: ignore[union-attr]

    @property
    def state(self) -> dict[str, Any]:
        """A dict that lives as long as the connection: per-connection state."""
        return self.protocol.state

    def notify(self, method: str, *args: Any, **kwargs: Any) -> None:
        """Send the peer a notification (see L{JSONProtocol.notify})."""
        self.protocol.notify(method, *args, **kwargs)

    def call(self, method: str, *args: Any, **kwargs: Any) -> Deferred[Any]:
        """Call a method of the peer (see L{JSONProtocol.call})."""
        return self.protocol.call(method, *args, **kwargs)

    def publish(self, topic: str, data: Any) -> Deferred[None]:
        """Publish an event to C{topic} (see L{JSONService.publish})."""
        return self._pubsub().publish(topic, data)

    def subscribe(self, topic: str) -> Deferred[None]:
        """
        Subscribe this connection to C{topic}, as the handler decides (no
        authorization hook; C{max_subscriptions} applies).  See
        L{PubSub.subscribe<jsonservice.pubsub.PubSub.subscribe>}.
        """
        return self._pubsub().subscribe(self.protocol, topic)

    def unsubscribe(self, topic: str) -> bool:
        """End this connection's subscription to C{topic}; whether there was one."""
        return self._pubsub().unsubscribe(self.protocol, topic)

    def _pubsub(self) -> PubSub:
        service = self.protocol.service
        if service is None:
            raise InvalidRequest(data="this connection serves no service: no topics")
        return service.pubsub

    def __repr__(self) -> str:
        return f"<CallContext {self.method!r} id={self.request_id!r}>"


class Handler:
    """
    One registered handler with its signature analysed once, at
    registration, so that checking params per call is a few set and length
    comparisons (the full C{inspect.Signature.bind} runs only to explain a
    mismatch, or for signatures the quick checks do not cover).  Its
    annotations are compiled then too (L{ParamConverter}): a handler with
    none, or with validation off, is called exactly as before.

    @ivar name: the method name (L{None} for the plain-message handler).
    @ivar func: the function.
    @ivar context: whether C{func} takes a L{CallContext} first.
    @ivar is_async: whether C{func} is an C{async def}.
    @ivar hints: the resolved annotations of C{func} (by parameter name,
        C{"return"} for the result), for validation and C{rpc.discover}.
    @ivar converter: validates and converts params as the annotations say;
        L{None} when there is nothing to convert or validation is off.
    @ivar rich: the result classes (from the return annotation) that the
        responder turns into their JSON form itself; see
        L{rich_result_classes}.
    """

    __slots__ = (
        "_names",
        "_quick_named",
        "_quick_positional",
        "_required_names",
        "_signature",
        "context",
        "converter",
        "fast",
        "func",
        "hints",
        "is_async",
        "max_positional",
        "min_positional",
        "name",
        "respond",
        "rich",
    )

    def __init__(
        self, name: str | None, func: Callable[..., Any], context: bool, validate: bool = True
    ) -> None:
        """
        @param validate: convert params as the annotations say (L{False}:
            pass them unchanged, as to an unannotated handler).
        """
        self.name = name
        self.func = func
        self.context = context
        self.is_async = inspect.iscoroutinefunction(func)
        self.hints = resolve_hints(func)
        signature = inspect.signature(func)
        params = list(signature.parameters.values())
        if context:
            if not params or params[0].kind not in (
                inspect.Parameter.POSITIONAL_ONLY,
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
            ):
                raise TypeError(f"{func!r} takes context=True but has no positional first parameter")
            params = params[1:]
        self._signature = signature.replace(parameters=params)
        kinds = inspect.Parameter
        positional = [p for p in params if p.kind in (kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD)]
        keyword_only = [p for p in params if p.kind is kinds.KEYWORD_ONLY]
        var_positional = any(p.kind is kinds.VAR_POSITIONAL for p in params)
        var_keyword = any(p.kind is kinds.VAR_KEYWORD for p in params)
        self.min_positional = sum(1 for p in positional if p.default is kinds.empty)
        self.max_positional = 1 << 62 if var_positional else len(positional)
        self._quick_positional = all(p.default is not kinds.empty for p in keyword_only)
        named = [p for p in params if p.kind in (kinds.POSITIONAL_OR_KEYWORD, kinds.KEYWORD_ONLY)]
        self._names: frozenset[str] | None = None if var_keyword else frozenset(p.name for p in named)
        self._required_names = frozenset(p.name for p in named if p.default is kinds.empty)
        #: Positional params need no more than a length check, and no context.
        self.fast = self._quick_positional and not context
        self._quick_named = all(
            p.default is not kinds.empty for p in positional if p.kind is kinds.POSITIONAL_ONLY
        )
        converter = ParamConverter(params, self.hints) if validate else None
        if converter is not None and converter.unchecked:
            _log.warn(
                "{what}: parameters {names} are annotated with types that have no JSON form:"
                " their values are passed unchecked",
                what=name or "message handler",
                names=", ".join(sorted(converter.unchecked)),
            )
        self.converter = converter if converter is not None and converter.active else None
        self.rich = rich_result_classes(self.hints["return"]) if "return" in self.hints else frozenset()
        #: The handler wrapped once for the connection core (see L{Responder}).
        self.respond: Responder = self._responder()

    def _responder(self) -> Responder:
        """
        Wrap the handler once: check params, add the context, call, and
        turn a coroutine into a L{Deferred}.  The common shape (positional
        params whose count is all there is to check, no context) gets the
        shortest closure; everything else goes through L{check}.
        """
        if self.converter is not None or self.rich:
            return typed_responder(self, self.converter, self.rich, CallContext)
        if self.fast and not self.is_async:
            return positional_responder(self.func, self.check, self.min_positional, self.max_positional)
        return general_responder(self.func, self.check, self.name, self.context, self.is_async, CallContext)

    def check(self, params: list[Any] | dict[str, Any] | None) -> None:
        """
        Check that C{params} bind to the handler's signature.

        @raise InvalidParams: they do not; C{data} says which and why.
        """
        if params is None or type(params) is list:
            count = len(params) if params else 0
            if self._quick_positional and self.min_positional <= count <= self.max_positional:
                return
            args: tuple[Any, ...] = tuple(params) if params else ()
            kwargs: dict[str, Any] = {}
        else:
            params_dict: dict[str, Any] = params  # type: ignore[assignment]
            keys = params_dict.keys()
            if (
                self._quick_named
                and self._required_names <= keys
                and (self._names is None or keys <= self._names)
            ):
                return
            args, kwargs = (), params_dict
        try:
            self._signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise InvalidParams(data=f"{self.name or 'message handler'}: {exc}") from None

    def __repr__(self) -> str:
        return f"<Handler {self.name!r} {self.func!r}>"


def internal_error(failure: Failure, what: str) -> InternalError:
    """
    Log an unexpected handler failure under a fresh error id and return
    the -32603 error to send, which carries that id (and no traceback).

    @param what: what failed, for the log (e.g. the method name).
    """
    error_id = secrets.token_hex(6)
    _log.failure(
        "Handler {what} failed (error id {error_id})",
        failure,
        what=what,
        error_id=error_id,
    )
    return InternalError(data={"error_id": error_id})


class JSONService:
    """
    A set of JSON-RPC methods and, optionally, a handler for plain JSON
    messages.  One service can serve any number of connections and
    factories.

    Handlers may return a value, a L{Deferred}, or be C{async def}.  They
    raise L{RPCError} (or a subclass) to answer with that error; any other
    exception is logged and answered -32603 with an error id.  Annotated
    params are validated and converted before the call (see
    L{jsonservice.typed}).

    @ivar validate: whether handlers registered without a C{validate=} of
        their own convert their params.
    """

    def __init__(
        self,
        title: str = "jsonservice",
        version: str = "0",
        *,
        pubsub: Backend | str | None = None,
        validate: bool = True,
    ) -> None:
        """
        @param title: the service's name in its OpenRPC document.
        @param version: the service's version in its OpenRPC document.
        @param pubsub: what carries published events: L{None} (in this
            process), C{"redis://host:port/db"}, or a L{Backend}; see
            L{PubSub.use<jsonservice.pubsub.PubSub.use>}.
        @param validate: the default of every handler registered here:
            convert params as the annotations say (L{False}: pass them
            unchanged; a handler's own C{validate=} overrides it).
        """
        self.title = title
        self.version = version
        self.validate = validate
        self._methods: dict[str, Handler] = {}
        self._message_handler: Handler | None = None
        self._document_cache: tuple[Any, dict[str, Any]] | None = None
        #: The topics: C{rpc.subscribe}/C{rpc.unsubscribe}, L{publish}.
        self.pubsub = PubSub(pubsub)
        builtins = {
            "rpc.ping": Handler("rpc.ping", _ping, False),
            "rpc.discover": Handler("rpc.discover", self._document, False),
        }
        #: Every method's responder by name, built-ins included: the table
        #: the connection core looks methods up in.  Registration updates
        #: it in place, so open connections see new and replaced methods.
        self.responders: dict[str, Responder] = {name: h.respond for name, h in builtins.items()}
        # Built-ins on the one request path: the auth gate and the drain apply.
        self.responders[SUBSCRIBE_METHOD] = self.pubsub.subscribe_responder
        self.responders[UNSUBSCRIBE_METHOD] = self.pubsub.unsubscribe_responder

    def publish(self, topic: str, data: Any) -> Deferred[None]:
        """
        Send C{data} to every subscriber of C{topic} as the notification
        C{{"jsonrpc": "2.0", "method": "rpc.event", "params": {"topic": topic, "data": data}}},
        in every process the backend reaches (see L{PubSub.publish
        <jsonservice.pubsub.PubSub.publish>} for the errors).

        @return: a Deferred that fires once the backend took the event; it
            fails with L{PubSubUnavailable<jsonservice.pubsub.PubSubUnavailable>}
            when Redis cannot take it (return it from a handler, or add an errback).
        """
        return self.pubsub.publish(topic, data)

    def on_event(self, func: F) -> F:
        """
        The subscriber's side: handle the C{rpc.event} notifications this
        end receives, as C{func(topic, data)} (a decorator; plain or
        C{async def})::

            listener = JSONService()

            @listener.on_event
            def event(topic, data):
                print(topic, data)

            proto = await connect(reactor, "tcp:127.0.0.1:8080", listener)
            await proto.call("rpc.subscribe", "news")

        @return: C{func}, unchanged.
        """
        self.responders[EVENT_METHOD] = Handler(EVENT_METHOD, func, False).respond
        return func

    def authorize_subscribe(self, check: SubscribeCheck) -> SubscribeCheck:
        """
        Register the authorization hook of C{rpc.subscribe} (a decorator)::

            @service.authorize_subscribe
            def may_subscribe(ctx: CallContext, topic: str) -> bool:
                return topic.startswith("public.") or ctx.state.get("user") == "admin"

        It runs for each new subscription, after authentication, with the
        caller's L{CallContext}; it returns L{True} to allow (anything else:
        -32004 Unauthorized), or a L{Deferred}/coroutine of that, or raises an
        L{RPCError} to refuse with it.

        @return: C{check}, unchanged.
        """
        self.pubsub.check = check
        return check

    def discover(self) -> dict[str, Any]:
        """
        Describe this service's methods as an OpenRPC document (what the
        built-in C{rpc.discover} method returns).
        """
        from .openrpc import describe

        return describe(self._methods, self.title, self.version)

    def _document(self) -> dict[str, Any]:
        """
        The document C{rpc.discover} and C{GET /openrpc.json} answer: built
        once per set of methods, title and version (building it costs about
        0.3 ms, and a peer may ask for it in a loop or a batch of 1,000),
        then only encoded; never handed to code that could change it.
        """
        key = (tuple(self._methods.items()), self.title, self.version)
        cached = self._document_cache
        if cached is None or cached[0] != key:
            cached = self._document_cache = (key, self.discover())
        return cached[1]

    @overload
    def method(self, func: F, /) -> F: ...

    @overload
    def method(
        self, name: str | None = None, /, *, context: bool = False, validate: bool | None = None
    ) -> Callable[[F], F]: ...

    def method(
        self, name_or_func: Any = None, /, *, context: bool = False, validate: bool | None = None
    ) -> Any:
        """
        Register a JSON-RPC method.  Use as C{@service.method},
        C{@service.method("name")} or C{@service.method(context=True)}.

        @param context: pass the handler a L{CallContext} as its first
            argument.
        @param validate: convert params as the handler's annotations say
            (L{False}: pass them unchanged; L{None}: the service's default).
        @return: the function, unchanged.
        """
        if callable(name_or_func):
            self.add_method(name_or_func.__name__, name_or_func)
            return name_or_func
        name = name_or_func

        def register(func: F) -> F:
            self.add_method(name or func.__name__, func, context=context, validate=validate)
            return func

        return register

    def add_method(
        self, name: str, func: Callable[..., Any], *, context: bool = False, validate: bool | None = None
    ) -> None:
        """
        Register C{func} as method C{name} (replacing any handler of that name).

        @param validate: see L{method}.
        @raise ValueError: C{name} is reserved (starts with C{rpc.} or C{$/}).
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"a method name is a non-empty string, not {name!r}")
        if name.startswith(("rpc.", "$/")):
            raise ValueError(f"method names starting with 'rpc.' or '$/' are reserved: {name!r}")
        handler = Handler(name, func, context, self.validate if validate is None else validate)
        self._methods[name] = handler
        self.responders[name] = handler.respond

    @overload
    def message(self, func: F, /) -> F: ...

    @overload
    def message(
        self, func: None = None, /, *, context: bool = False, validate: bool | None = None
    ) -> Callable[[F], F]: ...

    def message(self, func: Any = None, /, *, context: bool = False, validate: bool | None = None) -> Any:
        """
        Register the handler of plain JSON messages (any JSON value that is
        not JSON-RPC): C{@service.message} or C{@service.message(context=True)}.
        Its return value, unless L{None}, is sent back as one line; replies
        keep the order the messages arrived in.  An annotated message
        parameter converts the message as a method's params do (see
        L{method} for C{validate}); one that does not convert is answered
        -32602 with id null.
        """
        check = self.validate if validate is None else validate
        if func is not None:
            self._message_handler = Handler(None, func, False, check)
            return func

        def register(f: F) -> F:
            self._message_handler = Handler(None, f, context, check)
            return f

        return register

    @property
    def methods(self) -> Mapping[str, Handler]:
        """The registered methods by name (read-only view)."""
        return self._methods

    @property
    def message_handler(self) -> Handler | None:
        """The plain-message handler, if one is registered."""
        return self._message_handler

    @property
    def message_responder(self) -> Responder | None:
        """The plain-message handler's responder (for the connection core)."""
        handler = self._message_handler
        return handler.respond if handler is not None else None

    def remove_method(self, name: str) -> None:
        """
        Unregister method C{name}; open connections answer it -32601 from now on.

        @raise KeyError: no method of that name is registered.
        """
        del self._methods[name]
        del self.responders[name]

    def __contains__(self, name: object) -> bool:
        return name in self._methods

    def __iter__(self) -> Iterator[str]:
        return iter(self._methods)

    def __len__(self) -> int:
        return len(self._methods)

    def dispatch(
        self,
        method: str,
        params: list[Any] | dict[str, Any] | None,
        protocol: JSONProtocol | None = None,
        request_id: Id | object = None,
    ) -> Any:
        """
        Run method C{method} with C{params}.

        @return: the handler's value, or a L{Deferred} firing with it (a
            coroutine is wrapped in one).
        @raise RPCError: unknown method, params that do not bind, or what
            the handler raised; any other exception becomes an
            L{InternalError} (logged).
        """
        respond = self.responders.get(method)
        if respond is None:
            raise MethodNotFound(data=f"no method named {method!r}"[:200])
        return _invoke(respond, params, protocol, request_id, method)

    def handle_message(self, message: Any, protocol: JSONProtocol | None = None) -> Any:
        """
        Run the plain-message handler on C{message}.

        @return: the reply (L{None}: no reply), or a L{Deferred} of it.
        @raise RPCError: no handler is registered, or it raised.
        """
        handler = self._message_handler
        if handler is None:
            raise InvalidRequest(data="this service takes JSON-RPC 2.0 only, not plain messages")
        return _invoke(handler.respond, [message], protocol, None, None)


def _ping() -> str:
    """Answer C{"pong"}: the built-in C{rpc.ping} (a health check)."""
    return "pong"


def _invoke(respond: Responder, params: Any, protocol: Any, request_id: Any, method: str | None) -> Any:
    """Call a responder outside a connection, mapping exceptions as the core does."""
    try:
        return respond(params, request_id, protocol)
    except RPCError:
        raise
    except Exception:
        raise internal_error(Failure(), method or "message handler") from None
