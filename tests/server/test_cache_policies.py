"""ComfyUI's --cache-classic / --cache-lru N / --cache-none: which node outputs later prompts reuse."""
from __future__ import annotations

import dataclasses

import pytest

from server.__main__ import parse_args
from server.app import create_app
from tests import testnodes
from tests.conftest import of_type, run_prompt


def graph(value: int) -> dict:
    return {"1": {"class_type": "TestConstant", "inputs": {"value": value}},
            "2": {"class_type": "TestAdd", "inputs": {"a": ["1", 0], "b": 1}},
            "3": {"class_type": "TestOutput", "inputs": {"value": ["2", 0]}}}


async def ran(client, value: int) -> list[str]:
    """The nodes that executed (not replayed from the cache) for graph(value)."""
    testnodes.CALLS.clear()
    _, messages = await run_prompt(client, graph(value))
    assert of_type(messages, "execution_success")
    return [name for name, _ in testnodes.CALLS]


@pytest.mark.parametrize("policy, size, again, back", [
    ("classic", 0, [], ["TestConstant", "TestAdd", "TestOutput"]),  # the second prompt's run dropped the first's
    ("lru", 10, [], []),
    ("none", 0, ["TestConstant", "TestAdd", "TestOutput"], ["TestConstant", "TestAdd", "TestOutput"]),
])
async def test_what_each_policy_reuses(aiohttp_client, settings, registry, policy, size, again, back):
    settings = dataclasses.replace(settings, cache_policy=policy, cache_lru_size=size)
    client = await aiohttp_client(create_app(settings, registry))
    assert await ran(client, 1) == ["TestConstant", "TestAdd", "TestOutput"]
    assert await ran(client, 1) == again  # the same prompt at once
    await ran(client, 2)
    assert await ran(client, 1) == back  # after another prompt


async def test_lru_forgets_the_least_recently_used_beyond_its_size(aiohttp_client, settings, registry):
    client = await aiohttp_client(create_app(dataclasses.replace(settings, cache_policy="lru", cache_lru_size=3),
                                             registry))
    await ran(client, 1)
    await ran(client, 2)  # three more outputs: graph(1)'s are evicted
    assert await ran(client, 1) == ["TestConstant", "TestAdd", "TestOutput"]


@pytest.mark.parametrize("flags, policy, size", [([], "classic", 0), (["--cache-classic"], "classic", 0),
                                                 (["--cache-lru", "5"], "lru", 5), (["--cache-none"], "none", 0)])
def test_flags(flags, policy, size):
    settings = parse_args(flags)
    assert (settings.cache_policy, settings.cache_lru_size) == (policy, size)


def test_the_flags_exclude_each_other():
    with pytest.raises(SystemExit):
        parse_args(["--cache-none", "--cache-lru", "3"])
