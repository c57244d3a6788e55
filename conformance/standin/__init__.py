"""Stand-in implementations built on the third-party ``websockets`` package.

Development aid only: they let the harness run end to end before (or beside)
wsproto-lite's own server and client, and reproduce the reference numbers in
conformance/README.md. Selected with ``python -m conformance ... --impl websockets``;
requires ``pip install websockets``. Nothing else in conformance/ imports this package.
"""

AGENT = "websockets"
