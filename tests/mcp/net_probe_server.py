"""An MCP server (the official Python SDK's) whose one tool opens a TCP
connection: tests/mcp_client.rs launches it in the sandbox with and
without `network = true` and sees the connection refused or made.

Usage: net_probe_server.py   (stdio)
"""

import socket

from mcp.server.mcpserver import MCPServer

server = MCPServer("net-probe", log_level="WARNING")


@server.tool()
def connect(port: int) -> str:
    """Connects to 127.0.0.1:PORT; says what happened."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            return "connected"
    except OSError as e:
        return f"refused: {e}"


if __name__ == "__main__":
    server.run("stdio")
