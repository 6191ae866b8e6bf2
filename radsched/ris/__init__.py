"""The RIS gateway (the QIE replacement): scheduling use cases over HL7/MLLP and their REST facade.

:func:`radsched.ris.component.start` builds it from the parts it needs and returns a ``RisGateway``.
Public API for other components: :mod:`radsched.ris.service` (``SchedulingService``, ``BookingInput``,
``BookedAppointment``, ``BookingHook``), :mod:`radsched.ris.errors`, and
:func:`radsched.ris.openapi.add_paths`.
"""
