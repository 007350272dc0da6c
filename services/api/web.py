"""The user's pages: sign in, pick photos from the bucket, publish an album, watch it live.

Server-rendered (Jinja2, autoescaped) with one small script for the live parts. The pages call
the same validation, store, outbox and replayer as the JSON API, so both publish alike. This
module is their URL map: each page's views live in a module of their own.
"""

from __future__ import annotations

from flask import Blueprint

from . import album_events, album_pages, new_album_page, signin_pages, thumbnail_route
from .album_model import format_utc
from .page_guards import guard

web = Blueprint("web", __name__, template_folder="templates")
guard(web)

web.add_url_rule("/", view_func=signin_pages.home, methods=["GET"])
web.add_url_rule("/login", view_func=signin_pages.login, methods=["GET", "POST"])
web.add_url_rule("/logout", view_func=signin_pages.logout, methods=["POST"])
web.add_url_rule("/albums/new", view_func=new_album_page.new_album, methods=["GET"])
web.add_url_rule("/albums/new", view_func=new_album_page.publish_album, methods=["POST"])
web.add_url_rule("/albums", view_func=album_pages.albums, methods=["GET"])
web.add_url_rule("/albums/<album_id>", view_func=album_pages.album_page, methods=["GET"])
web.add_url_rule("/albums/<album_id>/retry", view_func=album_pages.retry, methods=["POST"])
web.add_url_rule("/albums/<album_id>/events", view_func=album_events.album_events, methods=["GET"])
web.add_url_rule("/thumbnails/<path:key>", view_func=thumbnail_route.thumbnail, methods=["GET"])
web.add_app_template_filter(format_utc, "utc")
