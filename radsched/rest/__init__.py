"""The HTTP side: the aiohttp application, error bodies, health and readiness, rate limits, the
scheduling REST facade (:mod:`.scheduling`) and the OpenAPI document (:mod:`.openapi`)."""
