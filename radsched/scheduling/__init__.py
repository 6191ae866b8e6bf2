"""Scheduling with the RIS (the QIE replacement): locations, slots and booking over HL7/MLLP.

:func:`radsched.scheduling.component.start` builds it from the parts it needs and returns a
``RisGateway``. Public API for other components: :mod:`radsched.scheduling.service`
(``SchedulingService``, ``BookingInput``, ``BookedAppointment``, ``BookingHook``) and
:mod:`radsched.scheduling.errors`. Its REST facade is radsched/rest/scheduling.py.
"""
