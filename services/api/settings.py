from __future__ import annotations

from pydantic import Field

from shared.settings import CommonSettings


class ApiSettings(CommonSettings):
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    #: gunicorn processes and threads per process.
    api_workers: int = Field(default=2, ge=1)
    api_threads: int = Field(default=8, ge=1)
    max_album_images: int = Field(default=200, ge=1)
