"""The mesh runtime: config, serving, guard enforcement and the Pregel engine (knows no particular agent)."""

import os as _os

# a2a-sdk traces each of its internal methods (event queue, consumer, task manager) once a tracer
# provider exists, which mesh.telemetry.tracing installs: many spans per request and no more insight
# than the mesh's own request, vertex, guard and tool spans. Off unless the user asks for them.
_os.environ.setdefault("OTEL_INSTRUMENTATION_A2A_SDK_ENABLED", "false")
