"""The local S3: moto's S3 behind a server that keeps connections alive, as S3 does.

`moto_server` runs moto on Werkzeug's development server, which closes the connection after
every response, so each GetObject would pay a new TCP connection that real S3 never charges
(boto3 keeps its connections). The same moto application, served by waitress, keeps them.

moto documents its server mode (`moto_server`, `moto.server.ThreadedMotoServer`), not a WSGI
application: both serve on Werkzeug and close every connection (20 GetObject calls, 20
connections). So the application is taken from `moto.server`, the module that builds it for
`moto_server`, never from deeper inside moto; tests/integration/test_s3_server.py fails if a
moto release moves it, and pyproject.toml holds moto below its next major.

    python -m dev.s3_server [--host 127.0.0.1] [--port 9000]
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

import waitress

# moto.server imports these without re-exporting them; it is still the module to take them from.
from moto.server import (  # type: ignore[attr-defined]
    DomainDispatcherApplication,
    create_backend_app,
)

#: Threads serving requests: enough for every upload thread of a busy uploader at once.
THREADS = 64


def application() -> Any:
    """moto's S3 (and the rest of moto) as one WSGI application, as `moto_server` builds it."""
    return DomainDispatcherApplication(create_backend_app)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", "-H", default="127.0.0.1")
    parser.add_argument("--port", "-p", type=int, default=9000)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    waitress.serve(
        application(),
        host=args.host,
        port=args.port,
        threads=THREADS,
        ident="moto",
        # An image of 10 MB or more stays in memory rather than a spool file.
        inbuf_overflow=64 * 1024 * 1024,
    )


if __name__ == "__main__":
    main()
