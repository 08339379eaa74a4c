"""MCP tool servers, one module each: Settings + create_server(settings), run by mesh.tools.runner (stdio or streamable HTTP)."""
