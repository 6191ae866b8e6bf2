"""The segment writer before issue 16's encode fast path, kept verbatim as the reference the fast one is
checked against (``test_encode_fast_path.py``): same ER7 text for every segment, delimiter set and codec
hint, and the same exception where the old one raised."""

from __future__ import annotations

from channels import charset as _charset
from channels.escaping import Delimiters, LineBreaks, escape
from channels.message import SegmentBuilder, _trim  # _trim is unchanged


def reference_encode(builder: SegmentBuilder, delims: Delimiters, codec_hint: str = "") -> str:
    """ER7 text of ``builder`` as ``SegmentBuilder.encode`` wrote it before the fast path."""
    codec = codec_hint or "utf-8"
    fields = builder._fields
    top = max(fields, default=0)
    out: list[str] = []
    for number in range(1, top + 1):
        breaks = LineBreaks.FORMATTED if number in builder.formatted else LineBreaks.HEX
        reps = fields.get(number, [])
        out.append(
            delims.repetition.join(
                _trim(
                    delims.component.join(
                        _trim(
                            delims.subcomponent.join(
                                escape(_charset.fit(s, codec), delims, breaks) for s in subs
                            ),
                            "",
                        )
                        for subs in comps
                    ),
                    delims.component,
                )
                for comps in reps
            )
        )
    while out and out[-1] == "":
        out.pop()
    return delims.field.join([builder.name, *out])
