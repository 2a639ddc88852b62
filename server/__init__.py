"""comfyd's HTTP and websocket server (aiohttp)."""
