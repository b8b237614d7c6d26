"""Engine process: `python -m steermoe_engine`, started by the TypeScript side.

Requests arrive as frames on stdin; replies leave as frames on fd 3. Stdout is pointed at stderr
before anything heavy is imported, so whatever a library prints can never corrupt the channel.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any, BinaryIO

REPLY_FD = 3


def _watch_parent() -> None:
    """Exit when the TypeScript process is gone, even in the middle of a long request."""
    parent = os.getppid()
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os._exit(1)


def main() -> None:
    replies: BinaryIO = os.fdopen(REPLY_FD, "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    # Ctrl-C reaches the whole process group; the TypeScript side decides how to stop, so the
    # engine finishes the request in hand instead of dying with a half-made reply.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_watch_parent, daemon=True).start()
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    from . import PROTOCOL_VERSION, protocol
    from .server import Server

    server = Server()
    protocol.write_frame(replies, {"type": "ready", "protocol": PROTOCOL_VERSION, **server.versions()})
    requests = sys.stdin.buffer
    while (request := protocol.read_frame(requests)) is not None:
        request_id = request.get("id")
        handler: Callable[[dict[str, Any]], dict[str, Any]] | None = server.handlers.get(request.get("op", ""))
        try:
            if handler is None:
                raise LookupError(f"unknown op {request.get('op')!r}")
            reply = {"id": request_id, "ok": True, "result": handler(request.get("params", {}))}
        except Exception as err:
            reply = {"id": request_id, "ok": False, "error": server.describe_error(err, traceback.format_exc())}
        protocol.write_frame(replies, reply)


if __name__ == "__main__":
    main()
