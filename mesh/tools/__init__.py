"""MCP in the mesh: tool modules (``modules``), serving them over stdio or streamable HTTP (``runner``, ``http``),
client connections to them (``connections``), host config entries (``hosts``), and the mesh as MCP tools (``bridge``).

An MCP request enters a tool server at ``http.http_app`` (HTTP) or the SDK's stdio
transport started by ``runner.run_server``; it enters the bridge the same way.
"""
