"""The aiohttp application: health, readiness, metrics, and the routes components add."""
