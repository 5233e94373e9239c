"""Users' conversations: models, services, selectors, the websocket consumer, pages and the admin."""
