"""Real mode (``mmlab live --real``): signed Bybit v5 REST, private websocket, order manager, reconciliation."""
