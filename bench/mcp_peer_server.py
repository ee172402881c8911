"""The peer of bench/mcp_bench.py: the MCP Python SDK's own server with
one trivial tool, over stdio or Streamable HTTP.

Usage: mcp_peer_server.py stdio | mcp_peer_server.py http PORT
"""

import sys

from mcp.server.mcpserver import MCPServer

server = MCPServer("peer", log_level="WARNING")


@server.tool()
def hello(input: str) -> str:
    """Answers at once."""
    return "Hello."


if __name__ == "__main__":
    if sys.argv[1] == "http":
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run("stdio")
