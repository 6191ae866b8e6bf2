"""Raw-bytes helpers of the RIS client: what the correlate hook reads from requests and replies."""

from __future__ import annotations

import pytest

from radsched.scheduling.client import acknowledged_id, control_id_of, message_type_of


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (b"MSH|^~\\&|RIS|R|A|B|20260101||ACK|R1|P|2.3\rMSA|AA|C1\r", b"C1"),
        (b"MSH|^~\\&|RIS|R|A|B|20260101||ACK|R1|P|2.3\nMSA|AE|C2|slot gone\n", b"C2"),
        (b"MSH|^~\\&|RIS|R|A|B|20260101||ACK|R1|P|2.3\r\nMSA|AA|C3", b"C3"),
        (b"MSH#^~\\&#RIS#R#A#B#20260101##ACK#R1#P#2.3\rMSA#AA#C4\r", b"C4"),
        (b"MSH|^~\\&|RIS|R|A|B|20260101||DSR^Q01|R1|P|2.3\rQAK|1|OK\r", None),
        (b"MSH|^~\\&|RIS|R|A|B|20260101||ACK|R1|P|2.3\rMSA|AA\r", None),
        (b"THIS IS NOT HL7\r", None),
        (b"", None),
    ],
)
def test_acknowledged_id(reply: bytes, expected: bytes | None) -> None:
    assert acknowledged_id(reply) == expected


def test_request_fields() -> None:
    request = (
        b"MSH|^~\\&|RADSCHED|RADSCHED|RIS|RIS|20260101||SRM^S01^SRM_S01|ABC123|P|2.5.1\rARQ|1\r"
    )
    assert control_id_of(request) == b"ABC123"
    assert message_type_of(request) == "SRM^S01"
    assert control_id_of(b"MSH|^~\\&|A") == b""
    assert message_type_of(b"MSH|^~\\&|A") == "unknown"
