"""The RIS gateway (the QIE replacement): scheduling use cases over HL7/MLLP and their REST facade.

``start(daemon, stack)`` wires it into the daemon and sets ``daemon.scheduling``. Public API for other
components: :mod:`radsched.ris.service` (``SchedulingService``, ``BookingInput``, ``BookedAppointment``,
``BookingHook``), :mod:`radsched.ris.errors`, and :func:`radsched.ris.openapi.add_paths`.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from radsched.daemon import Daemon


async def start(daemon: Daemon, stack: AsyncExitStack) -> None:
    """Start the component and set ``daemon.scheduling``."""
    from radsched.ris.component import start as start_component

    daemon.scheduling = await start_component(daemon, stack)
