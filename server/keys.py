"""Typed application keys: what handlers may take from the app."""
from aiohttp import web

from engine import Engine, Settings

from .userdata import UserStore
from .ws import EventHub

ENGINE = web.AppKey("engine", Engine)
SETTINGS = web.AppKey("settings", Settings)
HUB = web.AppKey("hub", EventHub)
USERS = web.AppKey("users", UserStore)
