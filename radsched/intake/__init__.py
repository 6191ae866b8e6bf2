"""Order intake (ORM^O01 over MLLP and ``POST /api/orders``) feeding the SMS conversation engine."""

from radsched.intake.component import start

__all__ = ["start"]
