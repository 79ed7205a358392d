"""Languages and time zones: the person's choice first, then the browser's, then the default."""

from __future__ import annotations

from pathlib import Path

from flask import Flask, current_app, has_request_context, request, session
from flask_babel import Babel, format_date, format_datetime, get_locale
from flask_login import current_user

#: Languages with a complete translation; the first is the fallback.
LANGUAGES = {"en": "English", "de": "Deutsch", "fr": "Français"}
TRANSLATIONS = Path(__file__).resolve().parent.parent / "translations"


def select_locale() -> str:
    """Pick the language of this request (commands speak the default language)."""
    if not has_request_context():
        return str(current_app.config["DEFAULT_LOCALE"])
    if current_user and current_user.is_authenticated and current_user.locale in LANGUAGES:
        return str(current_user.locale)
    chosen = session.get("locale")
    if chosen in LANGUAGES:
        return str(chosen)
    return requested_locale()


def requested_locale() -> str:
    """Return the best of the request's Accept-Language, else the default language."""
    return str(request.accept_languages.best_match(LANGUAGES)
               or current_app.config["DEFAULT_LOCALE"])


def select_timezone() -> str:
    """Pick the time zone dates are shown in."""
    if not has_request_context():
        return str(current_app.config["DEFAULT_TIMEZONE"])
    if current_user and current_user.is_authenticated and current_user.timezone:
        return str(current_user.timezone)
    return str(current_app.config["DEFAULT_TIMEZONE"])


def current_locale() -> str:
    """Return the language code of this request (``en``, ``de``, ``fr``)."""
    return str(get_locale() or "en")


def init_app(app: Flask) -> None:
    """Set up Flask-Babel with the project's ``translations/`` folder."""
    app.config["BABEL_TRANSLATION_DIRECTORIES"] = str(TRANSLATIONS)
    app.config["BABEL_DEFAULT_LOCALE"] = app.config["DEFAULT_LOCALE"]
    Babel(app, locale_selector=select_locale, timezone_selector=select_timezone)
    app.jinja_env.globals.update(current_locale=current_locale, LANGUAGES=LANGUAGES,
                                 format_datetime=format_datetime, format_date=format_date)
