"""Typed application keys: what handlers may take from the app."""
from aiohttp import web

from engine import Engine, Settings

from .frontend import Frontend
from .logs import LogBuffer
from .userdata import UserStore
from .webhooks import Webhooks
from .ws import EventHub

ENGINE = web.AppKey("engine", Engine)
SETTINGS = web.AppKey("settings", Settings)
HUB = web.AppKey("hub", EventHub)
USERS = web.AppKey("users", UserStore)
FRONTEND = web.AppKey("frontend", Frontend)
LOGS = web.AppKey("logs", LogBuffer)
WEBHOOKS = web.AppKey("webhooks", Webhooks)
