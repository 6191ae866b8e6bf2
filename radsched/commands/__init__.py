"""CLI sub-commands that are more than a few lines; each module has ``register(subparsers)``."""
