"""The invoker: runs invocation attempts against user deployments (official Restate SDKs).

``transport`` is its HTTP layer (h2c and HTTP/1.1 streams to deployments).
"""
