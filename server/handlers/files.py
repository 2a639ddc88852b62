"""Placeholder: being written."""
from aiohttp import web


async def upload_image(request):
    raise web.HTTPNotImplemented()

async def upload_mask(request):
    raise web.HTTPNotImplemented()

async def view(request):
    raise web.HTTPNotImplemented()

async def view_metadata(request):
    raise web.HTTPNotImplemented()
