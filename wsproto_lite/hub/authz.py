"""Channel authorization: may this identity read (subscribe, presence, history) or publish on a channel?

Checked by the hub on every subscribe, publish, presence and history command, before the engine is asked;
a refusal is error 103 "permission denied" and nothing is subscribed, so a refused connection never
receives a publication.  The message never says which rule refused (no map of the policy for a prober).

Reading a channel (or a wildcard pattern) is allowed when the first rule that applies says so:

1. an API-key client (``trusted``): yes;
2. a grant in the token (``channels`` claim) covering the name: yes;
3. the personal namespace (``user:<id>``): only the exact channel of the connection's own user, never a
   pattern, never for anonymous connections;
4. a private namespace: only with a subscription token for this user and this exact channel (subscribe;
   the subscription lasts as long as the token), or while subscribed to it with one (presence, history);
5. an anonymous connection: only in a namespace open to anonymous connections (below);
6. otherwise the namespace's ``allow_subscribe``.

Publishing: trusted, or a ``publish`` grant covering the channel; else never in personal or private
namespaces, for anonymous connections only in namespaces open to them, otherwise where clients may publish.

Safer defaults once any authentication is configured (a JWT key or an API key, ``AuthConfig.authenticates``):
a namespace whose ``allow_publish`` / ``allow_anonymous`` is None (the built-in ones) lets clients publish
and anonymous connections in only while nothing is configured; with authentication, only the config file
turns them on (per namespace, or ``auth.allow_anonymous = true`` for every such namespace).  Anonymous
connections are accepted at ``connect`` when ``auth.allow_anonymous`` says so or, left unset, while nothing
is configured or some namespace has ``allow_anonymous = true``.  ``auth.anonymous_namespaces``, when set,
further limits anonymous connections to the namespaces it lists.
"""

from __future__ import annotations

from .auth import AuthConfig, Authenticator, Identity, SubscriptionGrant, grants_cover
from .namespaces import Channel, NamespaceOptions, Namespaces
from .protocol import ErrorCode, HubError

__all__ = ["Authorizer"]


def _denied() -> HubError:
    return HubError(ErrorCode.PERMISSION_DENIED, "permission denied")


class Authorizer:
    def __init__(self, authenticator: Authenticator, namespaces: Namespaces | None = None) -> None:
        self.authenticator = authenticator
        self.config: AuthConfig = authenticator.config
        self.namespaces = namespaces if namespaces is not None else Namespaces()
        self._private = frozenset(self.config.private_namespaces)
        anonymous = self.config.anonymous_namespaces
        self._anonymous = frozenset(anonymous) if anonymous is not None else None

    # -- the policy, as the start-up report tells it too -------------------------------------------------

    @property
    def anonymous_connections(self) -> bool:
        """Whether ``connect`` accepts a connection without credentials."""
        if self.config.allow_anonymous is not None:
            return self.config.allow_anonymous
        if not self.config.authenticates:
            return True
        return any(o.allow_anonymous for o in self.namespaces.namespaces.values())

    def clients_publish(self, namespace: str, options: NamespaceOptions) -> bool:
        """Whether clients without a grant may publish in ``namespace`` (anonymous ones: see below)."""
        if namespace and (namespace == self.config.personal_namespace or namespace in self._private):
            return False
        if options.allow_publish is not None:
            return options.allow_publish
        return not self.config.authenticates

    def anonymous_use(self, namespace: str, options: NamespaceOptions) -> bool:
        """Whether anonymous connections may read (and, where clients publish, publish in) ``namespace``."""
        if not self.anonymous_connections:
            return False
        if self._anonymous is not None and namespace not in self._anonymous:
            return False
        if options.allow_anonymous is not None:
            return options.allow_anonymous
        return self.config.allow_anonymous is True or not self.config.authenticates

    # -- the checks ---------------------------------------------------------------------------------

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
                raise _denied()
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
            raise _denied()
        if identity.anonymous and not self.anonymous_use(namespace, channel.options):
            raise _denied()
        if not channel.options.allow_subscribe:
            raise _denied()
        return None

    def check_publish(self, identity: Identity, channel: Channel) -> None:
        """Raise 103 unless ``identity`` may publish on ``channel``."""
        if identity.trusted or grants_cover(identity.publish, channel.name):
            return
        namespace = channel.namespace
        if identity.anonymous and not self.anonymous_use(namespace, channel.options):
            raise _denied()
        if not self.clients_publish(namespace, channel.options):
            raise _denied()
