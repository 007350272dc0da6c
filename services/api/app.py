"""The API's app factory: the composition root of the JSON API and the web pages.

The broker connection and the outbox relay start lazily, on first need (`services.py`).
"""

from __future__ import annotations

from flask import Flask

from shared.store import Store

from . import api_errors, rate_limits, request_trace, security_headers
from .json_api import api
from .operator_desk import desk
from .page_connect import connect
from .services import Services
from .sessions import SessionCookies, lifetime
from .settings import ApiSettings
from .web import web


def create_app(settings: ApiSettings | None = None, store: Store | None = None) -> Flask:
    settings = settings or ApiSettings()
    store = store or Store(settings.database_url)
    store.create_schema()
    app = api_errors.ErrorLoggingFlask(__name__)
    # The server refuses a larger body before reading it; this catches what reaches the app
    # another way (the test client, a chunked body).
    app.config["MAX_CONTENT_LENGTH"] = settings.api_max_body_bytes
    app.extensions["services"] = Services(settings, store)
    # The web pages' signed session cookie (the JSON API uses bearer tokens, not cookies):
    # named, flagged and checked in services/api/sessions.py.
    app.secret_key = settings.session_secret()
    app.session_interface = SessionCookies(settings)
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=lifetime(settings),
    )
    request_trace.install(app)
    security_headers.install(app, settings)
    rate_limits.init_app(app, settings)
    for blueprint in (api, web, connect, desk):
        app.register_blueprint(blueprint)
    api_errors.install(app)
    return app
