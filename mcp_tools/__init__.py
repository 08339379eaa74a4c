"""MCP tool servers, one module each: Settings + create_server(settings), run by mesh.tools (stdio or streamable HTTP)."""
