"""What the API's routes and pages use: the settings, the store, and what is built from them
(the outbox with its relay, the S3 client, the token cipher, ...), once per process on first
need. `create_app` puts one in the app; `current_services` gives a request its app's.
"""

from __future__ import annotations

import threading
from typing import Any

from flask import current_app

from shared.adapters import s3
from shared.broker.publisher import Publisher
from shared.config.token_cipher import TokenCipher, cipher_from_setting
from shared.contracts import topology
from shared.delivery.outbox import Outbox
from shared.delivery.replay import Replayer
from shared.process.clock import Clock, SystemClock
from shared.store import Store

from .page_albums import PageAlbums
from .settings import ApiSettings
from .thumbnails import Thumbnails


class Services:
    """What the routes use, built once per process on first need."""

    def __init__(self, settings: ApiSettings, store: Store, clock: Clock | None = None) -> None:
        self.settings = settings
        self.store = store
        # What the live stream polls and waits by; a test passes one it moves by hand.
        self.clock: Clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._outbox: Outbox | None = None
        self._publisher: Publisher | None = None
        self._relay: threading.Thread | None = None
        self._s3: Any = None
        self._page_albums: PageAlbums | None = None
        self._cipher: TokenCipher | None = None
        self._thumbnails: Thumbnails | None = None
        self._stop = threading.Event()

    @property
    def outbox(self) -> Outbox:
        with self._lock:
            if self._outbox is None:
                self._publisher = Publisher(self.settings.amqp_url)
                # The API's broker user writes to the work exchange only (docs/broker-users.md).
                self._outbox = Outbox(self.store, self._publisher, relays=(topology.WORK_EXCHANGE,))
                self._relay = self._outbox.start_relay(self._stop)
            return self._outbox

    def close(self, wait_s: float = 5.0) -> None:
        """Stop the outbox relay and close the broker connection and the S3 client, once no
        request uses them: left open, the publisher would hold its connection, and reconnect
        after every loss, for as long as the process lives."""
        self._stop.set()
        with self._lock:
            relay, publisher, s3_client = self._relay, self._publisher, self._s3
            self._relay = self._publisher = self._s3 = None
        if relay is not None:
            relay.join(wait_s)
        if publisher is not None:
            publisher.close()
        if s3_client is not None:
            s3_client.close()

    @property
    def cipher(self) -> TokenCipher:
        """Seals and opens the connected Pages' tokens (TOKEN_ENCRYPTION_KEYS)."""
        with self._lock:
            if self._cipher is None:
                keys = self.settings.token_encryption_keys.get_secret_value()
                self._cipher = cipher_from_setting(keys)
            return self._cipher

    @property
    def replayer(self) -> Replayer:
        return Replayer(self.store, self.outbox, self.settings.amqp_url)

    @property
    def page_albums(self) -> PageAlbums:
        with self._lock:
            if self._page_albums is None:
                self._page_albums = PageAlbums(self.settings)
            return self._page_albums

    @property
    def thumbnails(self) -> Thumbnails:
        with self._lock:
            if self._thumbnails is None:
                s = self.settings
                self._thumbnails = Thumbnails(
                    renders=s.api_thumbnail_renders,
                    wait_s=s.api_thumbnail_wait_s,
                    max_pixels=s.api_thumbnail_max_pixels,
                )
            return self._thumbnails

    @property
    def s3(self) -> Any:
        with self._lock:
            if self._s3 is None:
                self._s3 = s3.make_client(self.settings)
            return self._s3


def current_services() -> Services:
    services: Services = current_app.extensions["services"]
    return services
