"""Channel authorization: may this identity read (subscribe, presence, history) or publish on a channel?

Checked by the hub on every subscribe, publish, presence and history command, before the engine is asked;
a refusal is error 103 and nothing is subscribed, so a refused connection never receives a publication.

Reading a channel (or a wildcard pattern) is allowed when the first rule that applies says so:

1. an API-key client (``trusted``): yes;
2. a grant in the token (``channels`` claim) covering the name: yes;
3. the personal namespace (``user:<id>``): only the exact channel of the connection's own user, never a
   pattern, never for anonymous connections;
4. a private namespace: only with a subscription token for this user and this exact channel (subscribe;
   the subscription lasts as long as the token), or while subscribed to it with one (presence, history);
5. an anonymous connection in a namespace not listed in ``anonymous_namespaces`` (when that is set): no;
6. otherwise the namespace's ``allow_subscribe``.

Publishing: trusted, or a ``publish`` grant covering the channel; else never in personal or private
namespaces, never for anonymous connections outside ``anonymous_namespaces``, otherwise the namespace's
``allow_publish``.
"""

from __future__ import annotations

from .auth import AuthConfig, Authenticator, Identity, SubscriptionGrant, grants_cover
from .namespaces import Channel
from .protocol import ErrorCode, HubError

__all__ = ["Authorizer"]


def _denied(message: str) -> HubError:
    return HubError(ErrorCode.PERMISSION_DENIED, message)


class Authorizer:
    def __init__(self, authenticator: Authenticator) -> None:
        self.authenticator = authenticator
        self.config: AuthConfig = authenticator.config
        self._private = frozenset(self.config.private_namespaces)
        anonymous = self.config.anonymous_namespaces
        self._anonymous = frozenset(anonymous) if anonymous is not None else None

    def check_read(
        self, identity: Identity, channel: Channel, *, subscription_token: str = "", subscribed: bool = False
    ) -> SubscriptionGrant | None:
        """Raise 103 unless ``identity`` may subscribe to, or read presence/history of, ``channel``.

        Returns the subscription token's grant when that token is what allowed it (the subscription then
        ends when the token expires), None when the identity itself does (it lasts while the identity
        grants it: until a ``refresh`` that no longer does, or the connection's own expiry).
        """
        if identity.trusted or grants_cover(identity.subscribe, channel.name):
            return None
        namespace = channel.namespace
        if namespace == self.config.personal_namespace and namespace:
            if channel.is_pattern or identity.anonymous or channel.name != f"{namespace}:{identity.user}":
                raise _denied("a personal channel is readable by its user only")
            return None
        if namespace in self._private:
            if subscribed:
                return None  # the subscription was authorized (with a subscription token)
            if subscription_token and not channel.is_pattern:
                grant = self.authenticator.verify_subscription_token(
                    subscription_token, identity.user, channel.name
                )
                if grant is not None:
                    return grant
            raise _denied("this channel is private")
        if identity.anonymous and self._anonymous is not None and namespace not in self._anonymous:
            raise _denied("this namespace needs a token")
        if not channel.options.allow_subscribe:
            raise _denied("subscribing is not allowed in this namespace")
        return None

    def check_publish(self, identity: Identity, channel: Channel) -> None:
        """Raise 103 unless ``identity`` may publish on ``channel``."""
        if identity.trusted or grants_cover(identity.publish, channel.name):
            return
        namespace = channel.namespace
        if namespace and (namespace == self.config.personal_namespace or namespace in self._private):
            raise _denied("only the server publishes here")
        if identity.anonymous and self._anonymous is not None and namespace not in self._anonymous:
            raise _denied("this namespace needs a token")
        if not channel.options.allow_publish:
            raise _denied("clients may not publish in this namespace")
