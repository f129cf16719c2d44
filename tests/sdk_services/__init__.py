"""ASGI apps that tests serve with hypercorn in a subprocess (tests/support/sdk_server.py)."""
