"""Backend hooks: the hub asks the application (Centrifugo's proxies, ``internal/proxy/*.go``).

Each hook is optional: ``connect`` (a connection without a token: who is it?), ``refresh`` (its
connection expired: extend it?), ``subscribe``, ``sub_refresh``, ``publish``, ``rpc`` (the protocol's
``rpc`` command) and ``send`` (fire-and-forget).  A hook is a callable ``fn(request) -> response`` taking
and returning Centrifugo's proxy shapes as plain JSON values (``internal/proxyproto/proxy.proto``)::

    request:  {"client", "transport", "protocol", "encoding", "user", "channel", "method", "data",
               "headers": {...}}    # the fields the hook's proxy request has; headers passed through
    response: {"result": {...}} | {"error": {"code", "message", "temporary"}}
              | {"disconnect": {"code", "reason"}} | None (allowed, nothing changed)

so the same application code answers in-process (:class:`Hooks` ``on_connect(fn)``...) and over HTTP
(``hook_http.py``: the JSON body of a POST, ``headers`` as HTTP headers).  An in-process callable may
also raise ``HubError`` to refuse.

Never on the loop: a sync callable (and every HTTP hook) runs in a bounded thread pool (``workers``
threads; ``max_pending`` calls in flight at most, over it a call fails at once); an ``async def`` one
runs as a task on the hub's loop when that is asyncio (``HubASGI``, ``aio.py``), else with
``asyncio.run`` in a pool thread.  The answer comes back through the loop's ``call_soon_threadsafe``,
as a networked engine's does (``engine.Reply``), so a command's reply keeps its place in command order.

A backend that fails (raises, times out, answers junk) gives the command error 100 "internal server
error", temporary (centrifuge ``errors.go`` ``ErrorInternal``: what centrifugo's handlers return when
``ProxyXxx`` fails, e.g. ``connect_handler.go``), counted per hook in ``/metrics``.

Memory: a pending call is held by :class:`HookRunner` per session and dropped when the session closes;
the worker thread, the task and the timer hold it only weakly, so a hung hook keeps no connection alive.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import weakref
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeGuard, TypeVar

from .engine import Reply
from .part import HubPart
from .protocol import DisconnectCode, ErrorCode, HubError

if TYPE_CHECKING:
    from .hub import Hub
    from .session import Session
    from .transport import Cancellable

__all__ = ["HOOKS", "HookDisconnect", "HookFn", "HookStats", "Hooks", "HookRunner", "hook_failed"]

logger = logging.getLogger("wsproto_lite.hub.hooks")

#: The hooks, in the order of a connection's life.
HOOKS = ("connect", "refresh", "subscribe", "sub_refresh", "publish", "rpc", "send")

#: ``fn(request) -> response``, sync or ``async def``.
HookFn = Callable[[dict[str, Any]], Any]

#: Characters of an error message or disconnect reason taken from an answer.
MAX_MESSAGE = 1024


class HookDisconnect(HubError):
    """A hook's ``disconnect``: the command's error reply, then the close with ``disconnect_code``."""

    def __init__(self, disconnect_code: int, reason: str) -> None:
        super().__init__(ErrorCode.UNAUTHORIZED, reason or "disconnected")
        self.disconnect_code = disconnect_code


def hook_failed(message: str = "internal server error") -> HubError:
    """What a command gets when its hook failed: centrifuge's ``ErrorInternal`` (100, temporary)."""
    return HubError(ErrorCode.INTERNAL, message, temporary=True)


@dataclass
class HookStats:
    """Per hook: calls, failures (errors, junk answers), timeouts, and the seconds they took."""

    calls: dict[str, int] = field(default_factory=lambda: dict.fromkeys(HOOKS, 0))
    errors: dict[str, int] = field(default_factory=lambda: dict.fromkeys(HOOKS, 0))
    timeouts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(HOOKS, 0))
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(HOOKS, 0.0))
    answered: dict[str, int] = field(default_factory=lambda: dict.fromkeys(HOOKS, 0))


class Hooks:
    """The application's hooks (``hub.hooks``): register with ``on_connect(fn)`` (also a decorator)...

    ``timeout``: seconds a hook may take (per hook with ``set(name, fn, timeout=)``); ``headers``: the
    upgrade request's headers passed to every hook (lower-case names, e.g. ``("cookie",)``: Centrifugo's
    ``proxy_http_headers``); ``workers``/``max_pending``/``max_pending_per_connection``: the bounds.
    """

    def __init__(
        self,
        *,
        timeout: float = 5.0,
        headers: Iterable[str] = (),
        workers: int = 16,
        max_pending: int = 1024,
        max_pending_per_connection: int = 16,
    ) -> None:
        self.timeout = timeout
        self.headers = tuple(name.lower() for name in headers)
        self.workers = workers
        self.max_pending = max_pending
        self.max_pending_per_connection = max_pending_per_connection
        """One connection's calls in flight at most (over it: 111, temporary): one client cannot take
        the whole ``max_pending`` from the others."""
        self._fns: dict[str, tuple[HookFn, float]] = {}

    def set(self, name: str, fn: HookFn | None, *, timeout: float | None = None) -> None:
        """Install (or with None remove) hook ``name``."""
        if name not in HOOKS:
            raise ValueError(f"unknown hook {name!r} (known: {', '.join(HOOKS)})")
        if fn is None:
            self._fns.pop(name, None)
        else:
            self._fns[name] = (fn, self.timeout if timeout is None else timeout)

    def get(self, name: str) -> tuple[HookFn, float] | None:
        return self._fns.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._fns

    def _register(self, name: str, fn: HookFn) -> HookFn:
        self.set(name, fn)
        return fn

    def on_connect(self, fn: HookFn) -> HookFn:
        return self._register("connect", fn)

    def on_refresh(self, fn: HookFn) -> HookFn:
        return self._register("refresh", fn)

    def on_subscribe(self, fn: HookFn) -> HookFn:
        return self._register("subscribe", fn)

    def on_sub_refresh(self, fn: HookFn) -> HookFn:
        return self._register("sub_refresh", fn)

    def on_publish(self, fn: HookFn) -> HookFn:
        return self._register("publish", fn)

    def on_rpc(self, fn: HookFn) -> HookFn:
        return self._register("rpc", fn)

    def on_send(self, fn: HookFn) -> HookFn:
        return self._register("send", fn)


class _Pending:
    """One hook call in flight; only the runner holds it strongly (per session)."""

    __slots__ = ("reply", "name", "owner", "started", "timer", "task", "__weakref__")

    def __init__(self, name: str, owner: Session, started: float) -> None:
        self.reply: Reply[Any] = Reply()
        self.name = name
        self.owner = owner
        self.started = started
        self.timer: Cancellable | None = None
        self.task: asyncio.Task[Any] | None = None


Finish = Callable[[Any, BaseException | None], None]
T = TypeVar("T")


def _same(result: dict[str, Any]) -> dict[str, Any]:
    return result


class HookRunner(HubPart):
    """Calls the hooks for the hub's commands (``hub.hook_runner``); refers to the hub weakly."""

    def __init__(self, hub: Hub) -> None:
        super().__init__(hub)
        self.stats = HookStats()
        self._held: dict[Session, set[_Pending]] = {}
        self._pool: ThreadPoolExecutor | None = None
        self.in_flight = 0
        """Calls started and not yet returned (a hung one counts until it returns)."""

    def has(self, name: str) -> bool:
        return name in self.hub.hooks

    def request(self, session: Session, **fields: Any) -> dict[str, Any]:
        """A proxy request's common fields (``baseRequestHTTP`` in centrifugo's ``proxy/http.go``)."""
        info = session.info
        request: dict[str, Any] = {
            "client": info.client if info is not None else "",
            "transport": "websocket",
            "protocol": "json",
            "encoding": "json",
        }
        if info is not None and info.user:
            request["user"] = info.user
        request.update(fields)
        request["headers"] = self._headers(session)
        return request

    def _headers(self, session: Session) -> dict[str, str]:
        names = self.hub.hooks.headers
        upgrade = session.conn.request
        if not names or upgrade is None:
            return {}
        return {name: value for name, value in upgrade.headers if name.lower() in names}

    def call(
        self,
        session: Session,
        name: str,
        request: dict[str, Any],
        parse: Callable[[dict[str, Any]], T] = _same,  # type: ignore[assignment]
    ) -> Reply[T]:
        """Ask hook ``name``; the reply resolves to ``parse(result)`` (``result``: ``{}`` when none) in
        the loop thread, or fails with the hook's refusal or :func:`hook_failed` (a junk answer:
        ``parse`` raises it; counted)."""
        hub = self.hub
        hook = hub.hooks.get(name)
        loop = hub._loop
        if hook is None or loop is None:
            return Reply.failed(HubError(ErrorCode.NOT_AVAILABLE, "not available"))
        self.stats.calls[name] += 1
        held = self._held.get(session)
        if held is not None and len(held) >= hub.hooks.max_pending_per_connection:
            hub.stats.trip("hook_calls_per_connection")
            return Reply.failed(HubError(ErrorCode.TOO_MANY_REQUESTS, "too many requests", temporary=True))
        if self.in_flight >= hub.hooks.max_pending:
            self.stats.errors[name] += 1
            return Reply.failed(hook_failed("the backend is busy (retry later)"))
        fn, timeout = hook
        pending = _Pending(name, session, loop.time())
        self._held.setdefault(session, set()).add(pending)
        ref = weakref.ref(pending)
        pending.timer = loop.call_later(timeout, self._timed_out, ref)
        self.in_flight += 1
        self._launch(fn, request, ref, pending)
        return pending.reply.then(self._checked(name, parse))

    def _launch(
        self, fn: HookFn, request: dict[str, Any], ref: weakref.ref[_Pending], pending: _Pending
    ) -> None:
        loop = self.hub._loop

        def finish(value: Any, error: BaseException | None) -> None:  # any thread
            try:
                loop.call_soon_threadsafe(self._finished, ref, value, error)  # type: ignore[union-attr]
            except RuntimeError:  # the loop is closed: nobody waits any more
                pass

        if inspect.iscoroutinefunction(fn) and isinstance(loop, asyncio.AbstractEventLoop):
            task = loop.create_task(fn(request))
            task.add_done_callback(lambda done: finish(*_outcome(done)))
            pending.task = task
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.hub.hooks.workers, thread_name_prefix="hub-hook")
        self._pool.submit(_run_blocking, fn, request, finish)

    def _finished(self, ref: weakref.ref[_Pending], value: Any, error: BaseException | None) -> None:
        self.in_flight -= 1
        pending = ref()
        if pending is None or pending.reply.done:
            return  # its session closed, or it timed out
        self._release(pending)
        stats = self.stats
        stats.answered[pending.name] += 1
        stats.seconds[pending.name] += self.hub._now() - pending.started
        if error is None:
            pending.reply.resolve(value)
        elif isinstance(error, HubError):  # an in-process hook's own refusal
            pending.reply.fail(error)
        else:
            stats.errors[pending.name] += 1
            logger.warning("hook %s failed: %s", pending.name, error)
            pending.reply.fail(hook_failed())

    def _timed_out(self, ref: weakref.ref[_Pending]) -> None:
        pending = ref()
        if pending is None or pending.reply.done:
            return
        pending.timer = None
        self._release(pending)
        self.stats.timeouts[pending.name] += 1
        if pending.task is not None:
            pending.task.cancel()
        pending.reply.fail(hook_failed("the backend timed out (retry later)"))

    def _release(self, pending: _Pending) -> None:
        if pending.timer is not None:
            pending.timer.cancel()
            pending.timer = None
        held = self._held.get(pending.owner)
        if held is not None:
            held.discard(pending)
            if not held:
                del self._held[pending.owner]

    def forget(self, session: Session) -> None:
        """``session`` closed: drop its calls in flight (their answers will find nobody)."""
        for pending in self._held.pop(session, ()):
            if pending.timer is not None:
                pending.timer.cancel()
            if pending.task is not None:
                pending.task.cancel()

    def stop(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def _checked(self, name: str, parse: Callable[[dict[str, Any]], T]) -> Callable[[Any], T]:
        stats = self.stats

        def check(response: Any) -> T:
            try:
                return parse(response_result(response))
            except HubError as exc:
                if exc.code == ErrorCode.INTERNAL:
                    stats.errors[name] += 1
                raise

        return check


def _outcome(task: asyncio.Task[Any]) -> tuple[Any, BaseException | None]:
    if task.cancelled():
        return None, hook_failed("cancelled")
    error = task.exception()
    return (None, error) if error is not None else (task.result(), None)


def _run_blocking(fn: HookFn, request: dict[str, Any], finish: Finish) -> None:
    """In a pool thread: the hook's outcome to ``finish`` (an ``async def`` one on its own loop)."""
    try:
        value = fn(request)
        if inspect.isawaitable(value):
            value = asyncio.run(_awaited(value))
    except BaseException as exc:  # noqa: BLE001 - every failure is the hook's answer
        finish(None, exc)
    else:
        finish(value, None)


async def _awaited(value: Any) -> Any:
    return await value


def response_result(response: Any) -> dict[str, Any]:
    """The ``result`` of a proxy response; its ``disconnect`` or ``error`` raised (centrifugo checks
    ``Disconnect`` first, then ``Error``: ``connect_handler.go``); junk is :func:`hook_failed`."""
    if response is None:
        return {}
    if not isinstance(response, dict):
        raise hook_failed("the backend's answer is not an object")
    disconnect = response.get("disconnect")
    if disconnect is not None:
        raise _disconnect(disconnect)
    error = response.get("error")
    if error is not None:
        raise _error(error)
    result = response.get("result")
    if result is None:
        return {}
    if not isinstance(result, dict):
        raise hook_failed("the backend's result is not an object")
    return result


def _closable(code: object) -> TypeGuard[int]:
    """An int (not a bool) that a close frame from the hub may carry."""
    return type(code) is int and DisconnectCode.FIRST <= code <= DisconnectCode.LAST


def _disconnect(value: Any) -> HubError:
    if not isinstance(value, dict):
        return hook_failed("the backend's disconnect is not an object")
    code, reason = value.get("code"), value.get("reason", "")
    # a close code an application may send: 3000-4999 (RFC 6455 §7.4.2)
    if not _closable(code) or not isinstance(reason, str):
        return hook_failed("the backend's disconnect is malformed")
    return HookDisconnect(code, reason[:MAX_MESSAGE])


def _error(value: Any) -> HubError:
    if not isinstance(value, dict):
        return hook_failed("the backend's error is not an object")
    code, message = value.get("code"), value.get("message", "")
    temporary = value.get("temporary", False)
    if type(code) is not int or not 0 < code < 2**32 or not isinstance(message, str):
        return hook_failed("the backend's error is malformed")
    return HubError(code, message[:MAX_MESSAGE], temporary=temporary is True)


def now() -> float:
    """Wall-clock seconds (the ``expire_at`` of answers is a Unix time)."""
    return time.time()
