"""A backend whose weights live on one torch device in a 16-bit compute dtype.

:class:`TorchDeviceBackend` is the device-agnostic part shared by ``cuda`` (this plugin) and
``metal`` (forge-plugin-metal): weight preparation, ops and memory accounting are the same
whatever the device; subclasses only say which device exists and why it may not. On
``device="cpu"`` it runs anywhere, which is how the tests check everything except the device
itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from forge_kernel.interfaces.backend import Backend
from forge_kernel.interfaces.loader import PreparedWeights
from forge_plugin_cuda.availability import BackendUnavailable
from forge_plugin_cuda.ops import DeviceEmbedding, DeviceLinear
from forge_plugin_cuda.weights import parse_dtype, to_device_dense, to_device_matrix

if TYPE_CHECKING:
    from forge_kernel.interfaces.backend import EmbeddingOp, LinearOp
    from forge_kernel.interfaces.loader import WeightTensor


class TorchDeviceBackend(Backend):
    """Weights dequantized at load to ``dtype`` on ``device``; GEMMs by ``F.linear``.

    ``threads`` only sets torch's CPU thread count (host-side dequantization). Norm weights
    and biases: ``dense`` returns float32 (the interface's contract); biases of linear ops are
    kept in the compute dtype, next to their weight.
    """

    name = "torch-device"
    default_dtype = torch.bfloat16

    def __init__(self, device: str = "cpu", dtype: str | torch.dtype | None = None,
                 threads: int | None = None) -> None:
        if threads is not None:
            if not isinstance(threads, int) or threads < 1:
                raise ValueError(f"{self.name} backend: threads must be a positive integer, "
                                 f"got {threads!r}")
            torch.set_num_threads(threads)
        self.device = str(device)
        self._dtype = parse_dtype(dtype, self.default_dtype)
        # Prepared matrices by storage: a tied embedding and LM head share one device copy.
        self._prepared = PreparedWeights()
        self.weight_bytes = 0
        """Bytes of prepared matrices on the device (for the banner and memory planning)."""

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        return True, ""

    @property
    def compute_dtype(self) -> torch.dtype:
        return self._dtype

    def linear(self, weight: WeightTensor, bias: WeightTensor | None = None) -> LinearOp:
        matrix = self._matrix(weight)
        b = None
        if bias is not None:
            b = self.dense(bias)
            if tuple(b.shape) != (weight.shape[0],):
                raise ValueError(f"bias {bias.name!r} has shape {tuple(b.shape)}, expected "
                                 f"({weight.shape[0]},) for weight {weight.name!r}")
            b = b.to(self._dtype)
        return DeviceLinear(matrix, b)

    def embedding(self, weight: WeightTensor) -> EmbeddingOp:
        return DeviceEmbedding(self._matrix(weight))

    def dense(self, weight: WeightTensor) -> torch.Tensor:
        return self._guard(lambda: to_device_dense(weight, self.device), weight)

    def describe(self) -> str:
        dtype = str(self._dtype).removeprefix("torch.")
        return (f"{self.name} on {self.device}: {dtype} weights ({self.weight_bytes >> 20} MiB, "
                f"GGUF dequantized at load), torch GEMMs")

    def _matrix(self, weight: WeightTensor) -> torch.Tensor:
        found = self._prepared.get(weight)
        if found is None:
            found = self._guard(lambda: to_device_matrix(weight, self._dtype, self.device),
                                weight)
            self._prepared.put(weight, found)
            self.weight_bytes += found.numel() * found.element_size()
        return found

    def _guard(self, make, weight: WeightTensor) -> torch.Tensor:
        """Run ``make``; an allocation failure on the device becomes a one-line reason."""
        try:
            return make()
        except torch.OutOfMemoryError as exc:
            raise BackendUnavailable(
                f"{self.name}: out of memory on {self.device} while loading {weight.name!r} "
                f"{tuple(weight.shape)} after {self.weight_bytes >> 20} MiB of weights: "
                f"{' '.join(str(exc).split())[:200]}") from None
