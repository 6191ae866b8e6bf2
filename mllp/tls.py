"""TLS contexts for MLLP connections to a peer (an EMR, the RIS), from file paths.

Kept here, standard library only, so that every caller gets the same safe defaults: TLS 1.2 or
newer, the peer's certificate verified against the given CA (never the system store: a hospital's
interface engine is signed by the hospital's own CA), the host name checked, and an optional client
certificate for mutual TLS.
"""

from __future__ import annotations

import ssl
from pathlib import Path


def client_context(
    ca: str | Path, *, cert: str | Path | None = None, key: str | Path | None = None
) -> ssl.SSLContext:
    """A client context trusting only ``ca``; ``cert`` (+ ``key``, if not in the same file) is
    presented for mutual TLS. Raises ``ValueError`` naming the file that does not load."""
    if key is not None and cert is None:
        raise ValueError("a client key needs a client certificate (cert=)")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED and check_hostname by default
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_verify_locations(cafile=str(ca))
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"cannot load CA certificates from {ca}: {_why(exc)}") from None
    if cert is not None:
        try:
            ctx.load_cert_chain(str(cert), None if key is None else str(key))
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(
                f"cannot load the client certificate {cert} with its key: {_why(exc)}"
            ) from None
    return ctx


def _why(exc: OSError | ssl.SSLError) -> str:
    if isinstance(exc, ssl.SSLError):
        return str(exc.reason or exc)
    return exc.strerror or str(exc)
