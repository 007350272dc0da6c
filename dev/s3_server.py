"""The local S3: moto's S3 behind a server that keeps connections alive, as S3 does.

`moto_server` runs moto on Werkzeug's development server, which closes the connection after
every response, so each GetObject would pay a new TCP connection that real S3 never charges
(boto3 keeps its connections). The same moto application, served by waitress, keeps them.

    python -m dev.s3_server [--host 127.0.0.1] [--port 9000]
"""

from __future__ import annotations

import argparse
import logging

import waitress
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

#: Threads serving requests: enough for every upload thread of a busy uploader at once.
THREADS = 64


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", "-H", default="127.0.0.1")
    parser.add_argument("--port", "-p", type=int, default=9000)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    app = DomainDispatcherApplication(create_backend_app)
    waitress.serve(app, host=args.host, port=args.port, threads=THREADS, ident="moto",
                   # An image of 10 MB or more stays in memory rather than a spool file.
                   inbuf_overflow=64 * 1024 * 1024)


if __name__ == "__main__":
    main()
