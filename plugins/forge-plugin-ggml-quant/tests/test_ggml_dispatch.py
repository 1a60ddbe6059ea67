"""``forge quantize --method NAME`` goes through the registered quantizers: a test quantizer
that takes ``bpw`` receives it, gets per-tensor progress shown and a summary printed; an option
it does not list is refused before any work."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

import forge_kernel
from forge_kernel.interfaces.quantizer import Quantizer

pytest.importorskip("transformers")
CALLS: list[dict] = []


class CopyQuantizer(Quantizer):
    """Copies the file (atomically) and reports one progress step per 'tensor'."""

    name = "copy"
    types = ()
    options = frozenset({"bpw"})

    def quantize(self, source, output, qtype=None, progress=None, **options):
        given = self.check_options(options)
        CALLS.append({"qtype": qtype, **given})
        temp = Path(output).with_name(Path(output).name + ".partial")
        shutil.copyfile(source, temp)
        os.replace(temp, output)
        for i in range(3):
            if progress:
                progress(i + 1, 3)
        return Path(output)


class CopyPlugin:
    @forge_kernel.hookimpl
    def forge_register_quantizers(self, register):
        register("copy", CopyQuantizer)


def test_method_dispatch_with_bpw(register_plugin, forge_cli, tmp_path):
    import forge_plugin_ggml_quant.plugin as ggml_plugin
    import forge_plugin_gguf.plugin as gguf_plugin
    from forge_plugin_models.testing import make_hf, write_gguf

    register_plugin(ggml_plugin, "ggml_quant")
    register_plugin(gguf_plugin, "gguf")
    register_plugin(CopyPlugin(), "copy")
    src = write_gguf(make_hf("llama"), tmp_path / "tiny.gguf", "F32")
    out = tmp_path / "tiny-copy"
    CALLS.clear()
    result = forge_cli("quantize", str(src), "--method", "copy", "--bpw", "4.0", "-o", str(out),
                       "--no-store")
    assert result.exit_code == 0, (result.stderr, result.exception)
    assert CALLS == [{"qtype": None, "bpw": 4.0}]
    # an F32 copy: 32 bits per weight plus the header and vocabulary
    assert re.search(r"0\.5 MiB -> 0\.5 MiB, 3[23]\.\d\d bits/weight \(131,008 weights\)",
                     result.stdout)
    assert "3/3" in result.stderr  # the progress bar (stderr) reached the last tensor
    refused = forge_cli("quantize", str(src), "--method", "copy", "--imatrix", "x.dat",
                        "-o", str(tmp_path / "other"), "--no-store")
    assert refused.exit_code != 0
    assert "the 'copy' quantizer does not support 'imatrix' (it accepts bpw)" in refused.stderr
    assert len(CALLS) == 1 and not (tmp_path / "other").exists()
