"""A Django project for the README's Channels example: signed-cookie sessions (no database), a login view,
and the README's views; ``configure(views)`` sets it up (once per process, next to
tests/adapters/channels_project.py, whose settings it extends) and returns Django's URL patterns list."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

urlpatterns: list[Any] = []  # ROOT_URLCONF points here; filled by configure()


def configure(views: dict[str, Callable[..., Any]]) -> None:
    """Django settings for sessions and this module's URLs; ``views``: name -> the README's view."""
    from django.conf import settings
    from django.http import JsonResponse
    from django.urls import path

    from tests.adapters.channels_project import configure as configure_django

    configure_django()
    settings.ROOT_URLCONF = __name__
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
    settings.MIDDLEWARE = ["django.contrib.sessions.middleware.SessionMiddleware"]

    async def login(request: Any, name: str) -> Any:
        request.session["user"] = name  # the application's own login
        return JsonResponse({"user": name})

    urlpatterns[:] = [path("login/<name>", login), path("rooms/<room>", views["say"])]
