"""The checkout's launcher: ``python -m server …`` runs ``wsproto_lite``'s command line from a clone.

The code lives under ``wsproto_lite/`` (the I/O layer is ``wsproto_lite.server``); an installed wheel has
the ``wsproto-lite`` console script and ``python -m wsproto_lite`` instead, and no top-level ``server``.
"""
