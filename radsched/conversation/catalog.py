"""The default wording: every text the engine can send, in English and Spanish.

Operators override any of these from configuration (see :mod:`radsched.conversation.templates` and
docs/sms.md). Writing rules the checks in :mod:`radsched.conversation.templates` enforce:

- one SMS segment after substitution with the longest allowed values;
- GSM-7 only, so Spanish drops the accents GSM-7 lacks (á í ó ú) but keeps é, ñ, ¿, ¡;
- never ask a patient to reply CANCEL (Twilio opts them out of everything) - menus are numbered;
- only allow-listed placeholders; none of them can carry a name, MRN, diagnosis or indication.

Menu templates end with ``{menu}`` and then ``{more}`` on its own line: ``{more}`` is filled
with the matching ``hint_more_*`` text when there is a further page, and with nothing
otherwise (the rendered text is stripped, so the empty last line disappears).
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["DEFAULT_LANGUAGE", "DEFAULT_PROCEDURE_TYPES", "DEFAULT_TEXTS", "TIME_FORMATS"]

DEFAULT_LANGUAGE = "en"

DEFAULT_TEXTS: Mapping[str, Mapping[str, str]] = {
    "en": {
        "consent_request": (
            "{practice_name}: you have an imaging exam to schedule. Reply YES to book by text. "
            "STOP to opt out, HELP for help. Msg&data rates may apply."
        ),
        "help": (
            "{practice_name} scheduling texts. To book by phone or for help call "
            "{scheduling_phone}. Reply STOP to opt out. Msg&data rates may apply."
        ),
        "opted_out": (
            "{practice_name}: you will get no more texts from us. To schedule, call "
            "{scheduling_phone}. Reply START to resubscribe."
        ),
        "resubscribed": (
            "{practice_name}: you are subscribed again. To schedule, call {scheduling_phone}. "
            "Reply STOP to opt out."
        ),
        "call_us": (
            "{practice_name}: please call {scheduling_phone} to schedule your imaging exam."
        ),
        "declined": (
            "OK, we will not schedule by text. To schedule, please call {practice_name} at "
            "{scheduling_phone}."
        ),
        "no_availability": (
            "{practice_name}: there are no open times to book by text soon. Please call "
            "{scheduling_phone} to schedule."
        ),
        "ended": (
            "This scheduling request is closed. For help, call {practice_name} at "
            "{scheduling_phone}."
        ),
        "location_menu": "Reply with the number of a location:\n{menu}\n{more}",
        "no_slots_at_location": (
            "No times soon at {location_name}. Reply with the number of another location:"
            "\n{menu}\n{more}"
        ),
        "slot_menu": "Open times at {location_name}. Reply with a number to book:\n{menu}\n{more}",
        "slot_taken": (
            "Sorry, that time was just taken. Reply with a number for another time:\n{menu}\n{more}"
        ),
        "no_more_slots": (
            "No later times at {location_name}. Reply with a number from the last list, or "
            "call {scheduling_phone}."
        ),
        "confirmation": (
            "Booked: {procedure_type} at {location_name}, {time}. Code {code}. To change, "
            "call {scheduling_phone}."
        ),
        "change_menu": (
            "Other times at {location_name}. Reply with a number to move, or L for other places:"
            "\n{menu}\n{more}"
        ),
        "rescheduled": (
            "Moved: {procedure_type} at {location_name}, {time}. Code {code}. To change, "
            "call {scheduling_phone}."
        ),
        "hint_more_locations": "MORE for others",
        "hint_more_times": "MORE for later times",
        "ris_wait": (
            "{practice_name}: we're having trouble reaching the schedule; we'll text you shortly."
        ),
        "appointment_cancelled": (
            "{practice_name}: your {procedure_type} on {time} is no longer booked. To book "
            "again, call {scheduling_phone}."
        ),
        "appointment_moved": (
            "Your {procedure_type} was moved to {time}. New code {code}. To change, call "
            "{scheduling_phone}."
        ),
        "reply_confirmed": (
            "Thank you: your {procedure_type} on {time} is confirmed. To change, call "
            "{scheduling_phone}."
        ),
        "request_taken": "{practice_name}: we'll ask the scheduling team and text you back.",
        "request_approved": (
            "{practice_name}: as you asked, your {procedure_type} on {time} is no longer booked. "
            "To book again, call {scheduling_phone}."
        ),
        "request_denied": (
            "{practice_name}: the scheduling team could not make that change by text. Please "
            "call {scheduling_phone}."
        ),
        "reminder": (
            "Reminder: your {procedure_type} at {location_name} on {time}. Reply 1 to confirm, "
            "2 to change, 3 to cancel."
        ),
        "confirmation_waitlist": (
            "Booked: {procedure_type} at {location_name}, {time}. Code {code}. Reply W for a "
            "text if an earlier time opens."
        ),
        "waitlist_joined": (
            "{practice_name}: we'll text you if an earlier time opens for your {procedure_type}. "
            "Reply W again to stop."
        ),
        "waitlist_left": (
            "{practice_name}: no more texts about earlier times. Your {procedure_type} on {time} "
            "stays booked."
        ),
        "waitlist_offer": (
            "An earlier time opened for your {procedure_type}: {time}, same place. Reply YES to "
            "take it or NO to keep your time."
        ),
        "waitlist_kept": (
            "OK, your {procedure_type} stays on {time}. We'll text if another earlier time opens."
        ),
        "waitlist_gone": (
            "Sorry, that time was just taken. Your {procedure_type} stays on {time}. We'll text "
            "if another opens."
        ),
    },
    "es": {
        "consent_request": (
            "{practice_name}: tiene un examen por programar. Responda SI para reservar por "
            "texto o STOP para no recibir mensajes. Pueden aplicar tarifas."
        ),
        "help": (
            "{practice_name}: mensajes para programar citas. Para citas o ayuda llame al "
            "{scheduling_phone}. Responda STOP para no recibir mensajes."
        ),
        "opted_out": (
            "{practice_name}: ya no le enviaremos mensajes. Para programar llame al "
            "{scheduling_phone}. Responda START para volver a recibirlos."
        ),
        "resubscribed": (
            "{practice_name}: se ha suscrito de nuevo. Para programar llame al "
            "{scheduling_phone}. Responda STOP para no recibir mensajes."
        ),
        "call_us": (
            "{practice_name}: por favor llame al {scheduling_phone} para programar su examen "
            "de imagen."
        ),
        "declined": (
            "De acuerdo, no haremos la cita por texto. Para programarla llame a "
            "{practice_name} al {scheduling_phone}."
        ),
        "no_availability": (
            "{practice_name}: no hay horarios libres pronto para reservar por texto. Por favor "
            "llame al {scheduling_phone}."
        ),
        "ended": (
            "Esta solicitud de cita ya se cerro. Para ayuda llame a {practice_name} al "
            "{scheduling_phone}."
        ),
        "location_menu": "Responda con el numero del lugar:\n{menu}\n{more}",
        "no_slots_at_location": (
            "No hay horarios pronto en {location_name}. Para otro lugar responda con su "
            "numero:\n{menu}\n{more}"
        ),
        "slot_menu": (
            "Horarios en {location_name}. Responda con un numero para reservar:\n{menu}\n{more}"
        ),
        "slot_taken": (
            "Ese horario ya se ocupo. Responda con un numero para otro horario:\n{menu}\n{more}"
        ),
        "no_more_slots": (
            "No hay horarios mas tarde en {location_name}. Responda con un numero de la lista "
            "anterior o llame al {scheduling_phone}."
        ),
        "confirmation": (
            "Cita reservada: {procedure_type} en {location_name}, {time}. Codigo {code}. Para "
            "cambiarla llame al {scheduling_phone}."
        ),
        "change_menu": (
            "Otros horarios en {location_name}. Responda con un numero, o L para otro lugar:"
            "\n{menu}\n{more}"
        ),
        "rescheduled": (
            "Cita cambiada: {procedure_type} en {location_name}, {time}. Codigo {code}. Para "
            "cambiarla llame al {scheduling_phone}."
        ),
        "hint_more_locations": "MAS para otros",
        "hint_more_times": "MAS para mas tarde",
        "ris_wait": ("{practice_name}: no logramos consultar la agenda; le escribiremos en breve."),
        "appointment_cancelled": (
            "{practice_name}: su {procedure_type} del {time} ya no esta reservado. Para otra "
            "cita, llame al {scheduling_phone}."
        ),
        "appointment_moved": (
            "Su {procedure_type} se cambio al {time}. Nuevo codigo {code}. Para cambiarlo, "
            "llame al {scheduling_phone}."
        ),
        "reply_confirmed": (
            "Gracias: su {procedure_type} del {time} esta confirmado. Para cambiarlo, llame al "
            "{scheduling_phone}."
        ),
        "request_taken": "{practice_name}: consultaremos al equipo de citas y le escribiremos.",
        "request_approved": (
            "{practice_name}: como pidio, su {procedure_type} del {time} ya no esta reservado. "
            "Para otra cita, llame al {scheduling_phone}."
        ),
        "request_denied": (
            "{practice_name}: el equipo de citas no pudo hacer ese cambio por texto. Llame al "
            "{scheduling_phone}."
        ),
        "reminder": (
            "Recordatorio: su {procedure_type} en {location_name} el {time}. Responda 1 para "
            "confirmar, 2 para cambiar, 3 para cancelar."
        ),
        "confirmation_waitlist": (
            "Cita reservada: {procedure_type} en {location_name}, {time}. Codigo {code}. "
            "Responda W si quiere aviso de un horario antes."
        ),
        "waitlist_joined": (
            "{practice_name}: le avisaremos si se libera un horario antes para su "
            "{procedure_type}. Responda W otra vez para parar."
        ),
        "waitlist_left": (
            "{practice_name}: no le avisaremos de horarios antes. Su {procedure_type} del {time} "
            "sigue reservado."
        ),
        "waitlist_offer": (
            "Se libero un horario antes para su {procedure_type}: {time}, mismo lugar. Responda "
            "SI para tomarlo o NO para seguir igual."
        ),
        "waitlist_kept": (
            "De acuerdo, su {procedure_type} sigue el {time}. Le avisaremos si se libera otro."
        ),
        "waitlist_gone": (
            "Lo sentimos, ese horario ya se ocupo. Su {procedure_type} sigue el {time}. Le "
            "avisaremos si se libera otro."
        ),
    },
}

# DICOM modality code -> what the patient reads. Deliberately coarse (never the ordered
# procedure text, which can reveal a body part or a condition); operators who want even less
# can map every code to "imaging exam". Unknown codes fall back to the "*" entry.
DEFAULT_PROCEDURE_TYPES: Mapping[str, Mapping[str, str]] = {
    "en": {
        "CR": "X-ray",
        "DX": "X-ray",
        "CT": "CT scan",
        "MR": "MRI",
        "US": "ultrasound",
        "MG": "mammogram",
        "NM": "nuclear scan",
        "PT": "PET scan",
        "RF": "fluoroscopy",
        "BMD": "bone density scan",
        "XA": "angiography",
        "*": "imaging exam",
    },
    "es": {
        "CR": "radiografia",
        "DX": "radiografia",
        "CT": "tomografia",
        "MR": "resonancia",
        "US": "ultrasonido",
        "MG": "mamografia",
        "NM": "estudio nuclear",
        "PT": "estudio PET",
        "RF": "fluoroscopia",
        "BMD": "densitometria",
        "XA": "angiografia",
        "*": "examen de imagen",
    },
}

# (weekday abbreviations Mon..Sun, month abbreviations Jan..Dec, 12-hour clock?, order)
# Written out here rather than taken from the C locale: the daemon's locale is not the
# patient's, and GSM-7 rules out "sáb".
TIME_FORMATS: Mapping[str, tuple[tuple[str, ...], tuple[str, ...], bool]] = {
    "en": (
        ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"),
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
        True,
    ),
    "es": (
        ("lun", "mar", "mié", "jue", "vie", "sab", "dom"),
        ("ene", "feb", "mar", "abr", "may", "jun", "jul", "ago", "sep", "oct", "nov", "dic"),
        False,
    ),
}
