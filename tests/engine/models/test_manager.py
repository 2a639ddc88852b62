"""ModelManager's VRAM policy, with the device simulated: which networks are offloaded when another needs room."""
from __future__ import annotations

import types

import torch

from engine.models.manager import ModelManager


class SimulatedDevice(ModelManager):
    """Pretends to be a 10-unit accelerator: moves are recorded instead of performed."""

    RESERVE_BYTES = 0

    def __init__(self, capacity: int, vram_mode: str = "normal"):
        super().__init__(torch.device("cpu"), vram_mode)
        self.device = torch.device("cuda", 0)  # never touched: _move and free_bytes are simulated
        self.capacity = capacity
        self.on_device: dict[int, torch.nn.Module] = {}
        self.moves: list[tuple[str, str]] = []

    def _move(self, network, device):
        self.moves.append((network.label, device.type))
        if device.type == "cuda":
            self.on_device[id(network)] = network
        else:
            self.on_device.pop(id(network), None)

    def free_bytes(self) -> int:
        return self.capacity - sum(_bytes(n) for n in self.on_device.values())


def _bytes(network) -> int:
    return sum(p.numel() * p.element_size() for p in network.parameters())


def owner(label: str, floats: int):
    net = torch.nn.Linear(floats, 1, bias=False)
    net.label = label
    return types.SimpleNamespace(unet=net, patches=())


def test_least_recently_used_network_is_offloaded_to_make_room(monkeypatch):
    import engine.models.manager as module

    manager = SimulatedDevice(capacity=4 * 250)  # room for 250 floats
    # Parameters really stay on the CPU: report "on the device" from the simulation.
    monkeypatch.setattr(module, "_device_of", lambda net: manager.device if id(net) in manager.on_device
                        else torch.device("cpu"))
    a, b, c = owner("a", 100), owner("b", 100), owner("c", 100)
    for model in (a, b):
        with manager.running(model):
            pass
    assert manager.moves == [("a", "cuda"), ("b", "cuda")]
    with manager.running(a):  # a is used again: b is now the least recently used
        pass
    with manager.running(c):
        pass
    assert manager.moves[-2:] == [("b", "cpu"), ("c", "cuda")]
    assert set(n.label for n in manager.on_device.values()) == {"a", "c"}


def test_high_vram_never_offloads_and_low_vram_always_does(monkeypatch):
    import engine.models.manager as module

    high = SimulatedDevice(capacity=0, vram_mode="high")
    monkeypatch.setattr(module, "_device_of", lambda net: torch.device("cpu"))
    with high.running(owner("a", 10)):
        pass
    assert high.moves == [("a", "cuda")]

    low = SimulatedDevice(capacity=10**9, vram_mode="low")
    with low.running(owner("b", 10)):
        pass
    assert low.moves == [("b", "cuda"), ("b", "cpu")]
