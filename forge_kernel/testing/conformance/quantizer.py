"""``QuantizerConformance``: the contract of :class:`~forge_kernel.interfaces.quantizer.Quantizer`.

Usage::

    class TestMyQuantizer(QuantizerConformance):
        @pytest.fixture()
        def quantizer(self):
            return MyQuantizer()

        @pytest.fixture()
        def source(self):                    # a small ModelSource to quantize
            return load_tiny_model()

A subclass may override ``check_output(path, qtype)`` to reload the file and compare values.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from forge_kernel.interfaces.quantizer import Quantizer


class QuantizerConformance:
    """Subclass and provide ``quantizer`` and ``source`` fixtures."""

    @pytest.fixture()
    def quantizer(self) -> Quantizer:
        raise NotImplementedError("provide a `quantizer` fixture")

    @pytest.fixture()
    def source(self):  # noqa: ANN201 - a ModelSource
        raise NotImplementedError("provide a `source` fixture (a small ModelSource)")

    def check_output(self, path: Path, qtype: str) -> None:
        """Extra checks on a written file (reload, compare); default: nothing more."""

    def test_declares_types(self, quantizer: Quantizer) -> None:
        assert isinstance(quantizer, Quantizer)
        assert quantizer.name and quantizer.types
        assert all(isinstance(t, str) for t in quantizer.types)

    def test_writes_each_type_atomically(self, quantizer: Quantizer, source,
                                         tmp_path: Path) -> None:
        for qtype in quantizer.types:
            output = tmp_path / f"out-{qtype}.bin"
            calls: list[tuple[int, int]] = []
            written = quantizer.quantize(source, output, qtype,
                                         progress=lambda d, t, c=calls: c.append((d, t)))
            assert Path(written).is_file() and Path(written).stat().st_size > 0
            assert calls and calls[-1][0] == calls[-1][1], "progress must reach done == total"
            leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(output.name + ".")]
            assert not leftovers, f"temporary files left behind: {leftovers}"
            self.check_output(Path(written), qtype)

    def test_unknown_type_is_an_error(self, quantizer: Quantizer, source, tmp_path: Path) -> None:
        with pytest.raises((ValueError, KeyError, NotImplementedError)):
            quantizer.quantize(source, tmp_path / "out.bin", "NOT_A_TYPE")
        assert not (tmp_path / "out.bin").exists(), "a failed quantization left an output file"
