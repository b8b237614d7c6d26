"""Engine process: `python -m steermoe_engine`, started by the TypeScript side.

Requests arrive as frames on stdin; replies leave as frames on fd 3. Stdout is pointed at stderr
before anything heavy is imported, so whatever a library prints can never corrupt the channel.
"""

from __future__ import annotations

import argparse
import gc
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, BinaryIO

if TYPE_CHECKING:
    from .operations import Operations

REPLY_FD = 3


def _watch_parent() -> None:
    """Exit when the TypeScript process is gone, even in the middle of a long request."""
    parent = os.getppid()
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os._exit(1)


def quiet() -> None:
    """What every engine process does first: stdout to stderr, Ctrl-C left to the TypeScript side
    (the engine finishes the request in hand instead of dying with a half-made reply), and exit
    when the parent is gone."""
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_watch_parent, daemon=True).start()
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def operations_table() -> type[Operations]:
    """The operations, imported with the garbage collector off. Importing torch and transformers
    makes about a million objects that live as long as the process: collecting while they are made
    finds nothing and costs a sixth of an engine's start; frozen, later collections skip them."""
    gc.disable()
    try:
        from .operations import Operations
    finally:
        gc.freeze()
        gc.enable()
    return Operations


def serve(server: Any, request: dict[str, Any]) -> dict[str, Any]:
    """One request's reply: its result, or the error it raised."""
    request_id = request.get("id")
    handler: Callable[[dict[str, Any]], dict[str, Any]] | None = server.handlers.get(request.get("op", ""))
    try:
        if handler is None:
            raise LookupError(f"unknown op {request.get('op')!r}")
        return {"id": request_id, "ok": True, "result": handler(request.get("params", {}))}
    except Exception as err:
        return {"id": request_id, "ok": False, "error": server.describe_error(err, traceback.format_exc())}


def main() -> None:
    replies: BinaryIO = os.fdopen(REPLY_FD, "wb")
    quiet()
    parser = argparse.ArgumentParser(prog="steermoe_engine")
    parser.add_argument("--ranks", type=int, default=1, help="processes that train one model together (FSDP2)")
    world = parser.parse_args().ranks

    operations = operations_table()
    from . import PROTOCOL_VERSION, protocol
    from .distributed import lead

    ranks = lead(world) if world > 1 else None
    server = operations()
    protocol.write_frame(replies, {"type": "ready", "protocol": PROTOCOL_VERSION, **server.versions()})
    requests = sys.stdin.buffer
    while (request := protocol.read_frame(requests)) is not None:
        if ranks is not None:
            ranks.share(request)
        reply = serve(server, request)
        if ranks is not None and not reply["ok"]:
            ranks.exit_if_one_died(wait=1.0)
        protocol.write_frame(replies, reply)
    if ranks is not None:
        ranks.close()


if __name__ == "__main__":
    main()
