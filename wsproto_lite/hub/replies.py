"""A connection's replies in command order.

The engine may answer later (a :class:`~wsproto_lite.hub.engine.Reply`): replies still go out in command
order (a session's ``outbox`` holds the ones waiting for an earlier answer), counted in the queue bound.
No reply is larger than the bound.  Commands waiting are bounded apart from that (they are the hub's work,
not bytes the peer left unread): at ``max_commands_in_flight`` the connection's messages are paused (its
socket is not read) until half are answered, so a publisher whose acks wait on a slow engine slows down
instead of being dropped.  This object refers to its hub weakly (the hub owns it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from .auth import AuthFailure
from .engine import Reply
from .hooks import HookDisconnect
from .part import HubPart
from .protocol import Command, ErrorCode, HubError, error_frame, reply_frame
from .session import Answer, ConnectRefused, Result, Session, Slot, Then

if TYPE_CHECKING:
    from .hub import Hub

__all__ = ["Replies"]

logger = logging.getLogger("wsproto_lite.hub")


class Replies(HubPart):
    """Sends each command's answer in command order (``hub.replies``)."""

    def __init__(self, hub: Hub) -> None:
        super().__init__(hub)

    def run(self, session: Session, command: Command, answer: Answer) -> None:
        """Send ``command``'s answer now, or once it and every answer before it are ready."""
        if not isinstance(answer, Reply):
            answer = Reply.of(answer)
        if answer.done and not session.outbox:  # the usual path: answered at once, nothing before it
            self.send_answer(session, command, answer)
            return
        hub = self.hub
        outbox = session.outbox
        limit = hub.limits.max_commands_in_flight
        if len(outbox) >= 2 * limit:  # past the pause below: commands batched in frames already read
            hub.conns.drop_slow((session.conn,))
            return
        slot = Slot()
        outbox.append(slot)
        answer.observe(lambda done: self.fill(session, command, slot, done))
        if len(outbox) == limit:
            # what waits on the engine is the hub's work, not the peer's unread bytes: no more commands
            # from this peer (its socket is not read) until half of these are answered (``fill``)
            session.conn.pause_messages()

    def answer_frame(
        self, session: Session, command: Command, answer: Reply[Result]
    ) -> tuple[str, Callable[[], None] | None]:
        """The reply frame (``""``: none) and what to do right after it is sent."""
        error = answer.error
        hub = self.hub
        if error is None:
            value = answer.result()
            after = None
            if isinstance(value, Then):
                result, after = value.result, value.after
            else:
                result = value
            frame = reply_frame(command.id, command.method, result)
            if len(frame) <= hub.bound.max_reply or after is not None:
                return frame, after
            # a reply over the bound is not queued (commands that can build one check before they do)
            hub.stats.trip("reply_size")
            error = HubError(ErrorCode.LIMIT_EXCEEDED, "reply too large")
        return self.error_frame(session, command, error)

    def error_frame(
        self, session: Session, command: Command, error: BaseException
    ) -> tuple[str, Callable[[], None] | None]:
        stats = self.hub.stats
        if isinstance(error, HookDisconnect):
            # no reply, the close in its turn (centrifuge client.go: a handler's Disconnect closes)
            code, reason = error.disconnect_code, error.message
            return "", lambda: self.hub.disconnect(session.conn, code, reason)
        if not isinstance(error, HubError):
            logger.error("command %s failed", command.method, exc_info=error)
            error = HubError(ErrorCode.INTERNAL, "internal error", temporary=True)
        stats.errors += 1
        after = None
        if isinstance(error, AuthFailure):
            stats.auth_failures += 1
        if (
            command.method == "connect"
            and isinstance(error, AuthFailure | ConnectRefused)
            and error.code != ErrorCode.TOKEN_EXPIRED  # the SDKs get a new token and reconnect themselves
        ):
            # the error reply says why; then the close, whose code carries the reconnect advice
            code, reason = error.disconnect_code, error.message
            after = lambda: self.hub.disconnect(session.conn, code, reason)  # noqa: E731
        return error_frame(command.id, error), after

    def send_answer(self, session: Session, command: Command, answer: Reply[Result]) -> None:
        frame, after = self.answer_frame(session, command, answer)
        if (not frame or self.hub.conns.send_frame(session, frame)) and after is not None:
            after()

    def fill(self, session: Session, command: Command, slot: Slot, answer: Reply[Result]) -> None:
        """A waited-for answer arrived: send it and every answer behind it that is ready."""
        if session.closed:  # nothing goes out any more: do not build it
            session.outbox.clear()
            session.outbox_bytes = 0
            return
        frame, slot.after = self.answer_frame(session, command, answer)
        self.hold(session, slot, frame)
        outbox = session.outbox
        conns = self.hub.conns
        waiting = len(outbox)
        while outbox and outbox[0].frame is not None and not session.closed:
            ready = outbox.pop(0)
            session.outbox_bytes -= len(ready.frame)  # type: ignore[arg-type]
            sent = not ready.frame or conns.send_frame(session, ready.frame)
            if sent and ready.after is not None:
                ready.after()
        if len(outbox) <= self.hub.limits.max_commands_in_flight // 2 < waiting and not session.closed:
            # paused by ``run`` at the limit (a no-op when not); not from here: the held commands would run
            # inside whatever resolved this answer (an iteration over the engine's results, say)
            loop = self.hub._loop
            if loop is not None:
                loop.call_later(0.0, session.conn.resume_messages)

    def hold(self, session: Session, slot: Slot, frame: str) -> None:
        """Keep a built reply in its outbox slot (counted in the queue bound; dropped if over it)."""
        conns = self.hub.conns
        if conns.room(session, len(frame)):
            slot.frame = frame
            session.outbox_bytes += len(frame)
            conns.mark_behind(session)

    def send_error(self, session: Session, command_id: int, error: HubError) -> None:
        """The reply to a frame that is not a command (behind any reply still waiting)."""
        self.hub.stats.errors += 1
        frame = error_frame(command_id, error)
        if session.outbox:
            slot = Slot()
            session.outbox.append(slot)
            self.hold(session, slot, frame)
        else:
            self.hub.conns.send_frame(session, frame)
