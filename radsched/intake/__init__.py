"""Order intake (ORM^O01 over MLLP and ``POST /api/orders``) feeding the SMS conversation engine."""

from radsched.intake.component import resume_waiting, start

__all__ = ["resume_waiting", "start"]
