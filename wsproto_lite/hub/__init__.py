"""The real-time hub: channels in namespaces, presence, history and recovery over JSON text frames.

``python -m server hub`` starts it (chat demo at http://127.0.0.1:8000/); the protocol is in
``PROTOCOL.md`` next to this file; ``wsproto_lite.hub.client.HubClient`` is the Python client.
"""

from .app import HubServer
from .config import ConfigError, HubConfig, load_config
from .engine import ClientInfo, Engine, Publication
from .hub import Hub
from .limits import HubLimits
from .memory import MemoryEngine
from .metrics import HubStats
from .namespaces import NamespaceOptions, Namespaces
from .protocol import DisconnectCode, ErrorCode, HubError

__all__ = [
    "ClientInfo",
    "ConfigError",
    "DisconnectCode",
    "Engine",
    "ErrorCode",
    "Hub",
    "HubConfig",
    "HubError",
    "HubLimits",
    "HubServer",
    "HubStats",
    "MemoryEngine",
    "NamespaceOptions",
    "Namespaces",
    "Publication",
    "load_config",
]
