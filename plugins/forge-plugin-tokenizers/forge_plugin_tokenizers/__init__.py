"""forge-plugin-tokenizers: the tokenizer library the weight loaders use.

* :func:`from_gguf` builds a tokenizer from a GGUF file's ``tokenizer.*`` metadata
  (SentencePiece-style vocabularies such as Gemma's and Llama 2's, byte-level BPE such as
  Llama 3's and Qwen's);
* :func:`from_hf_dir` reads a Hugging Face directory's ``tokenizer.json``.

Both return a :class:`~forge_plugin_tokenizers.tokenizer.HFTokenizer` implementing
:class:`forge_kernel.interfaces.tokenizer.Tokenizer`. It registers no hooks: it is a library.
"""

from forge_plugin_tokenizers.gguf_vocab import from_gguf, gguf_fields
from forge_plugin_tokenizers.hf_dir import from_hf_dir

__all__ = ["from_gguf", "from_hf_dir", "gguf_fields"]
