"""``deepexposure serve``: the HTTP service (the ``serve`` extra: starlette, uvicorn, python-multipart).

``work`` does the per-photo work without web code, ``pool`` bounds it (threads, tickets, deadlines), ``metrics``
counts, ``openapi`` describes the API, ``app`` is the Starlette app, ``server`` checks, loads and serves.
"""
