"""A standalone MLLP transport: sans-IO framer plus a thin asyncio layer. Standard library only.

- :mod:`mllp.framing` -- :class:`FrameDecoder` (bytes in, events out) and :func:`encode_frame`;
- :mod:`mllp.server` -- :func:`start_server` (``asyncio.Protocol`` based, ordered per connection);
- :mod:`mllp.client` -- :class:`Client` (one request in flight, reconnect with backoff) and
  :class:`ClientPool`;
- :mod:`mllp.observe` -- :class:`Observer` hooks for metrics;
- :mod:`mllp.allow` -- :class:`PeerAllowList`, addresses and networks allowed to connect;
- :mod:`mllp.testing` -- a loopback peer and a fault-injecting proxy for tests.

See ``docs/mllp.md``.
"""

from mllp.allow import PeerAllowList
from mllp.client import Client, Correlate
from mllp.errors import (
    ClientClosed,
    CommitRejected,
    ConnectError,
    ConnectionLost,
    FramingError,
    FramingErrorKind,
    MLLPError,
    ReplyTimeout,
)
from mllp.framing import (
    CLOSED,
    COMMIT_ACK_BLOCK,
    COMMIT_NAK_BLOCK,
    DEFAULT_MAX_FRAME_SIZE,
    NEED_DATA,
    CommitAck,
    CommitNak,
    Event,
    Frame,
    FrameDecoder,
    encode_frame,
)
from mllp.observe import Observer
from mllp.peer import PeerInfo
from mllp.pool import ClientPool
from mllp.server import AllowPeer, FramingErrorHook, Handler, HandlerErrorHook, Server, start_server

__all__ = [
    "CLOSED",
    "COMMIT_ACK_BLOCK",
    "COMMIT_NAK_BLOCK",
    "DEFAULT_MAX_FRAME_SIZE",
    "NEED_DATA",
    "AllowPeer",
    "Client",
    "ClientClosed",
    "ClientPool",
    "CommitAck",
    "CommitNak",
    "CommitRejected",
    "ConnectError",
    "ConnectionLost",
    "Correlate",
    "Event",
    "Frame",
    "FrameDecoder",
    "FramingError",
    "FramingErrorHook",
    "FramingErrorKind",
    "Handler",
    "HandlerErrorHook",
    "MLLPError",
    "Observer",
    "PeerAllowList",
    "PeerInfo",
    "ReplyTimeout",
    "Server",
    "encode_frame",
    "start_server",
]
