"""TLS contexts for the MLLP listener (and mutual TLS when a CA is configured)."""

from __future__ import annotations

import ssl

from radsched.errors import ConfigError
from radsched.settings import Settings


def listener_context(settings: Settings) -> ssl.SSLContext | None:
    """None for plain TCP; a server context (TLS 1.2+) when MLLP_TLS_CERT is set.

    With MLLP_TLS_CA the listener requires a client certificate signed by that CA (mutual TLS), which is
    how a RIS on another network proves who it is.
    """
    cert, key, ca = settings.mllp_tls_cert, settings.mllp_tls_key, settings.mllp_tls_ca
    if cert is None:
        if key is not None or ca is not None:
            raise ConfigError(
                "RADSCHED_MLLP_TLS_CERT: required when MLLP_TLS_KEY or MLLP_TLS_CA is set"
            )
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert, key)
    except FileNotFoundError as exc:
        raise ConfigError(f"RADSCHED_MLLP_TLS_CERT: cannot read {exc.filename}") from None
    except ssl.SSLError as exc:
        raise ConfigError(
            f"RADSCHED_MLLP_TLS_KEY: certificate and key do not load together ({exc.reason})"
        ) from None
    if ca is not None:
        try:
            ctx.load_verify_locations(cafile=str(ca))
        except (FileNotFoundError, ssl.SSLError):
            raise ConfigError(
                f"RADSCHED_MLLP_TLS_CA: cannot load CA certificates from {ca}"
            ) from None
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx
