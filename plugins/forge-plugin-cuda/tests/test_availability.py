"""Every reason ``cuda_availability`` can give, from a stand-in ``torch`` module (the reasoning
runs on machines without a GPU), plus the real answer on this machine."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from forge_plugin_cuda.availability import BackendUnavailable, cuda_availability


def fake_torch(*, cuda="12.8", init_error=None, count=1, capability=(9, 0),
               free=80 << 30, total=141 << 30):
    def init():
        if init_error:
            raise RuntimeError(init_error)

    return SimpleNamespace(
        __version__="2.13.0+cu128", version=SimpleNamespace(cuda=cuda),
        cuda=SimpleNamespace(init=init, device_count=lambda: count,
                             get_device_capability=lambda i: capability,
                             get_device_name=lambda i: "NVIDIA H200",
                             mem_get_info=lambda i: (free, total)))


def test_usable_device():
    assert cuda_availability(0, fake_torch()) == (True, "")


@pytest.mark.parametrize("kwargs,index,expected", [
    ({"cuda": None}, 0, "CPU-only build"),
    ({"init_error": "The NVIDIA driver on your system is too old (found version 11040)."},
     0, "NVIDIA driver is too old"),
    ({"init_error": "Found no NVIDIA driver on your system."}, 0, "no CUDA device is visible"),
    ({"init_error": "CUDA error: unknown error"}, 0, "CUDA runtime failed to start"),
    ({"count": 0}, 0, "no CUDA device is visible"),
    ({"count": 2}, 2, "--device 2 is out of range: 2 CUDA device(s) visible (valid: 0..1)"),
    ({"capability": (6, 1)}, 0, "compute capability 6.1"),
    ({"free": 100 << 20}, 0, "out of memory: cuda:0 has 100 MiB free"),
    ({}, -1, "non-negative integer"),
])
def test_each_reason(kwargs, index, expected):
    ok, reason = cuda_availability(index, fake_torch(**kwargs))
    assert not ok and expected in reason, reason


def test_driver_message_is_kept_verbatim():
    ok, reason = cuda_availability(0, fake_torch(init_error="The NVIDIA driver on your "
                                                            "system is too old\n(found 11040)"))
    assert "(found 11040)" in reason and "\n" not in reason


def test_no_device_names_cuda_visible_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    ok, reason = cuda_availability(0, fake_torch(count=0))
    assert "CUDA_VISIBLE_DEVICES=''" in reason


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_real_answer_here_and_backend_refuses():
    from forge_plugin_cuda.backend import CudaBackend

    ok, reason = CudaBackend.availability()
    assert not ok and reason
    with pytest.raises(BackendUnavailable, match="backend 'cuda' is unavailable: "):
        CudaBackend()
