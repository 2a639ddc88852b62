"""Placeholder: being written."""
from aiohttp import web


async def get_users(request):
    raise web.HTTPNotImplemented()

async def post_users(request):
    raise web.HTTPNotImplemented()

async def get_settings(request):
    raise web.HTTPNotImplemented()

async def post_settings(request):
    raise web.HTTPNotImplemented()

async def get_setting(request):
    raise web.HTTPNotImplemented()

async def post_setting(request):
    raise web.HTTPNotImplemented()

async def list_userdata(request):
    raise web.HTTPNotImplemented()

async def list_userdata_v2(request):
    raise web.HTTPNotImplemented()

async def get_userdata_file(request):
    raise web.HTTPNotImplemented()

async def post_userdata_file(request):
    raise web.HTTPNotImplemented()

async def delete_userdata_file(request):
    raise web.HTTPNotImplemented()

async def move_userdata_file(request):
    raise web.HTTPNotImplemented()
