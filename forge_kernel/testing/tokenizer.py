"""A tokenizer for engine tests with tiny random models: id ``i`` is the text ``<i>``, so a
prompt is written as ids (``"<5><7>"``), stop strings can span tokens, and no vocabulary file
is needed. Id 1 is BOS and id 2 is EOS."""

from __future__ import annotations

from forge_kernel.interfaces.tokenizer import IncrementalDetokenizer, Tokenizer


class PieceDetokenizer(IncrementalDetokenizer):
    """Streams ``<i>`` per token; nothing is held back."""

    def add(self, token_id: int) -> str:
        return f"<{token_id}>"

    def flush(self) -> str:
        return ""


class PieceTokenizer(Tokenizer):
    """Id ``i`` is the text ``<i>``; 1 is BOS, 2 is EOS; ``vocab_size`` 300 (subclass to
    change it). The chat template joins the messages' contents."""

    vocab_size, bos_id, eos_ids, add_bos, chat_template = 300, 1, frozenset({2}), True, None

    def encode(self, text, add_special_tokens=True):
        return [1] + [int(p) for p in text.replace(">", " ").replace("<", " ").split()]

    def decode(self, ids, skip_special_tokens=True):
        return "".join(f"<{i}>" for i in ids)

    def id_to_piece(self, token_id):
        return f"<{token_id}>"

    def is_special(self, token_id):
        return token_id in (1, 2)

    def detokenizer(self, prompt_ids=()):
        return PieceDetokenizer()

    def apply_chat_template(self, messages, add_generation_prompt=True, **kwargs):
        return "".join(m["content"] for m in messages)
