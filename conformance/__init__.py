"""Run the Autobahn testsuite (wstest) against wsproto-lite, server and client role.

Entry point: ``python -m conformance {server,client,all}``; see conformance/README.md.
The harness is standard library only; wstest itself lives in a Python 2.7
virtualenv made by ``conformance/setup.sh``.
"""
