"""A standalone MLLP transport: sans-IO framer plus a thin asyncio layer. Standard library only."""
