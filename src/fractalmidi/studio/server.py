"""Serve the studio: bind the address first (a taken port fails before the model loads), load the
checkpoint, print the page's address and serve until Ctrl-C or SIGTERM (``fractalmidi studio``)."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

from fractalmidi.errors import UserError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
MAX_PORT = 65535
DEFAULT_THREADS = 1
"""torch threads for generation: one is steadiest on a busy CPU (two threads on two shared cores
were 8x slower than one for fractal-tiny); raise it on an idle many-core machine."""
STUDIO_HINT = "install the studio's packages with: pip install 'fractalmidi[studio]'"


@dataclass(frozen=True)
class ServerOptions:
    """Where the studio listens and what it generates with."""

    checkpoint: Path | None = None
    """A checkpoint, run folder or shipped model; without one the page cannot generate."""
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    threads: int = DEFAULT_THREADS


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (a taken port is a ``UserError``)."""
    if not 1 <= port <= MAX_PORT:
        raise UserError(f"--port must be in 1..{MAX_PORT}, got {port}")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror:
        raise UserError(f"--host {host!r} is not an address of this machine") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as err:
        sock.close()
        raise UserError(f"cannot listen on {host}:{port} ({err.strerror}): choose another --port or --host") from None
    sock.listen()
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def serve(session, sock: socket.socket, allowed_hosts) -> None:
    """Serve the studio on a bound socket until interrupted (Ctrl-C or SIGTERM)."""
    import uvicorn

    from fractalmidi.studio.app import create_app

    config = uvicorn.Config(create_app(session, allowed_hosts), log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])


def run_server(options: ServerOptions) -> None:
    """Serve the studio until interrupted; the page's address is printed once it listens."""
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise UserError(f"the studio needs FastAPI and uvicorn: {STUDIO_HINT}") from None
    from fractalmidi.inference import load_checkpoint
    from fractalmidi.studio.app import LOCAL_HOSTS
    from fractalmidi.studio.session import Session

    if options.threads < 1:
        raise UserError(f"--threads must be at least 1, got {options.threads}")
    sock = bind(options.host, options.port)  # first: a taken port fails before the model loads
    try:
        import torch

        torch.set_num_threads(options.threads)
        loaded = load_checkpoint(options.checkpoint) if options.checkpoint is not None else None
        local = options.host in LOCAL_HOSTS
        session = Session(loaded)
        try:
            model = (f"{loaded.model.preset} from {loaded.path}" if loaded
                     else "no model (pass --checkpoint to generate)")
            print(f"FractalMIDI Studio: {url_of(sock)}  ({model}; Ctrl-C stops it)", flush=True)
            if not local:
                print(f"note: listening on {options.host}: anyone who can reach this machine can use the page",
                      flush=True)
            serve(session, sock, LOCAL_HOSTS if local else ["*"])
        except KeyboardInterrupt:  # uvicorn stops gracefully, then passes Ctrl-C on: the normal way out
            print("FractalMIDI Studio stopped", flush=True)
        finally:
            session.close()
    finally:
        sock.close()
