"""The invoker: runs invocation attempts against user deployments (official Restate SDKs).

* ``invoker``: the ``Invoker`` of one partition leader (actions in, effects proposed), its
  ``Partition`` interface and ``InvokerConfig``.
* ``core``: one attempt as a sans-I/O state machine (the runtime's side of the service
  protocol) and the retry policy.
* ``_runner``: one attempt's asyncio I/O; ``_targets``: what the invoker reads from the schema.
* ``transport``: the HTTP layer (h2c and HTTP/1.1 streams to deployments).
"""
