"""wsproto-lite I/O layer: a selectors event loop, WebSocket server and clients, TLS, and the CLI."""
