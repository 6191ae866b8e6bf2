"""What an order is texted about and where: the patient's mobile number and the DICOM modality.

Phones: PID-13 (home) and PID-14 (business) repetitions in both XTN forms (2.3: a formatted number
in XTN-1; 2.5: country/area/local in XTN-5/6/7). Mobile equipment (XTN-3 = CP) wins; then any other
phone repetition the numbering plan does not call a landline, PID-13 before PID-14. Fax, pager and
e-mail repetitions are never texted.

Modality: OBR-24 (or the site's placement), a DICOM code. When a RIS leaves it empty, the procedure
code is looked up in the ``[procedure_modalities]`` table of the TOML file::

    [procedure_modalities]
    71045 = "CR"     # XR chest 2 views
    "IMG123" = "DX"
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from channels import PhoneCandidate
from radsched.errors import ConfigError
from radsched.modality import DICOM_MODALITIES
from radsched.privacy import may_receive_sms, normalise_phone

__all__ = ["choose_phone", "procedure_modalities", "resolve_modality"]

_NOT_VOICE = frozenset({"FX", "BP", "INTERNET", "X.400", "TDD", "TTY"})


def choose_phone(candidates: Iterable[PhoneCandidate], region: str = "US") -> str | None:
    """The E.164 number to text, or None when the order carries no usable one."""
    ranked = sorted(
        (c for c in candidates if c.equipment.upper() not in _NOT_VOICE and not c.email),
        key=lambda c: (not c.is_mobile, c.source != "PID-13"),
    )
    for candidate in ranked:
        e164 = normalise_phone(candidate.number, region)
        if e164 is not None and (candidate.is_mobile or may_receive_sms(e164)):
            return e164
    return None


def resolve_modality(modality: str, procedure_code: str, mapping: Mapping[str, str]) -> str | None:
    """OBR-24 when it is a DICOM code, else the procedure code's configured modality, else None."""
    code = modality.strip().upper()
    if code:
        return code if code in DICOM_MODALITIES else None
    return mapping.get(procedure_code.strip())


def procedure_modalities(section: Mapping[str, object] | None) -> dict[str, str]:
    """Validate the ``[procedure_modalities]`` TOML table (a bad entry stops start-up)."""
    out: dict[str, str] = {}
    for key, value in (section or {}).items():
        code = str(value).strip().upper()
        if code not in DICOM_MODALITIES:
            raise ConfigError(
                f"RADSCHED_CONFIG [procedure_modalities] {key!r}: {value!r} is not a DICOM modality code"
            )
        out[str(key).strip()] = code
    return out
