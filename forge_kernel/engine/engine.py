"""The engine loop: request -> scheduler -> model -> sampler -> output, one step at a time
(docs/architecture.md). Nothing here dispatches plugin hooks per token."""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch

from forge_kernel.engine.request import Request, SeqState, make_request, validate
from forge_kernel.engine.sampler import SamplingRow, sample
from forge_kernel.engine.types import (
    CompletionDelta,
    EngineStats,
    RequestMetrics,
    SamplingParams,
    Usage,
)
from forge_kernel.errors import InvalidRequest, RequestFailed
from forge_kernel.interfaces.batch import ForwardBatch, SequenceChunk
from forge_kernel.interfaces.constraint import compile_constraint
from forge_kernel.interfaces.kv_cache import KVCache
from forge_kernel.interfaces.model import CausalLM
from forge_kernel.interfaces.scheduler import ScheduledChunk, Scheduler
from forge_kernel.interfaces.speculator import Speculator
from forge_kernel.interfaces.tokenizer import Tokenizer

Event = tuple[str, "CompletionDelta | RequestFailed"]
"""``(request_id, delta)``; a :class:`RequestFailed` instead ends the request with that error."""
Row = tuple[Request, SeqState]
"""A choice that gets a token this step (one logits row)."""


class LLMEngine:
    """Owns the model, KV cache and scheduler; :meth:`step` runs one iteration."""

    def __init__(self, model: CausalLM, tokenizer: Tokenizer, kv_cache: KVCache,
                 scheduler: Scheduler, *, max_model_len: int, model_name: str = "model",
                 metadata: dict[str, Any] | None = None, config: Any = None,
                 speculator: Speculator | None = None) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.kv_cache = kv_cache
        self.scheduler = scheduler
        self.max_model_len = max_model_len
        self.model_name = model_name
        self.metadata = metadata or {}
        self.config = config
        self.speculator = speculator
        self.vocab_size = int(model.config.vocab_size)
        self._requests: dict[str, Request] = {}
        self._by_seq: dict[int, tuple[Request, SeqState]] = {}
        self._seq_ids = itertools.count(1)
        self._observers: list[Callable[[RequestMetrics], None]] = []
        # n > 1 (see Request.hold_back): the prompt is shared by forking or the prefix cache.
        self._fork_enabled = kv_cache.supports_fork and scheduler.accepts_forked
        self._share_prompt = self._fork_enabled or kv_cache.supports_prefix_caching
        self.adapters: tuple[str, ...] = ()
        """LoRA adapters requests may pick, set at start-up by the plugin that loads them."""
        self._stats = EngineStats(kv_capacity_tokens=kv_cache.capacity_tokens(),
                                  kv_free_tokens=kv_cache.free_tokens())

    # -- public API ---------------------------------------------------------------------------
    @property
    def model_config(self):
        """The model's :class:`~forge_kernel.interfaces.loader.ModelConfig`."""
        return self.model.config

    def generation_defaults(self) -> dict[str, Any]:
        """The model file's recommended sampling values (``temperature``, ``top_p``, ...)."""
        return dict(self.metadata.get("generation") or {})

    def add_observer(self, callback: Callable[[RequestMetrics], None]) -> None:
        """Call ``callback(metrics)`` once per finished request (never per token)."""
        self._observers.append(callback)

    def validate(self, prompt_ids: list[int], params: SamplingParams,
                 prompt_param: str = "prompt") -> None:
        """Raise :class:`InvalidRequest` if the request cannot run (before anything is queued)."""
        validate(prompt_ids, params, vocab_size=self.vocab_size,
                 max_model_len=self.max_model_len, prompt_param=prompt_param)
        if params.adapter is not None and params.adapter not in self.adapters:
            raise InvalidRequest(f"no LoRA adapter named {params.adapter!r} is loaded (loaded: "
                                 f"{', '.join(self.adapters) or 'none'})", param="model",
                                 code="model_not_found")
        if params.constraint is not None:  # compiled once (cached): a bad schema is a 400 now
            compile_constraint(params.constraint, self.tokenizer, self.vocab_size)

    def add_request(self, request_id: str, prompt_ids: list[int], params: SamplingParams,
                    prompt_param: str = "prompt") -> None:
        """Validate and queue a request; its deltas come out of :meth:`step`."""
        if request_id in self._requests:
            raise InvalidRequest(f"request id {request_id!r} is already in use",
                                 param="request_id")
        self.validate(prompt_ids, params, prompt_param)
        # A sequence must fit in the cache alone, or it would be preempted forever.
        fit = min(self.max_model_len, self.kv_cache.capacity_tokens())
        if len(prompt_ids) >= fit:
            raise InvalidRequest(
                f"the prompt has {len(prompt_ids)} tokens but the KV cache holds only {fit}; "
                f"shorten the {prompt_param} or start the server with more KV blocks",
                param=prompt_param, code="context_length_exceeded")
        namespace = self.adapters.index(params.adapter) + 1 if params.adapter else 0
        req = make_request(request_id, list(prompt_ids), params, self.tokenizer, fit,
                           lambda: next(self._seq_ids), cache_namespace=namespace)
        self._requests[request_id] = req
        for state in req.seqs:
            self._by_seq[state.seq.seq_id] = (req, state)
        for state in req.hold_back(self._share_prompt):
            self.scheduler.add(state.seq)
        self._stats.prompt_tokens_total += len(prompt_ids)
        self._refresh_stats()

    def abort(self, request_id: str) -> list[Event]:
        """Drop a request and free its KV; returns its final ``"abort"`` events. Idempotent."""
        req = self._requests.get(request_id)
        if req is None:
            return []
        events: list[Event] = []
        for state in req.seqs:
            if not state.finished:
                self.scheduler.abort(state.seq.seq_id)
                state.stop.abort()
                events.append(self._finish_seq(req, state, "abort"))
        self._refresh_stats()
        return events

    def row(self, seq_id: int) -> Row | None:
        """The request and choice of a live sequence (``None`` once it ended)."""
        return self._by_seq.get(seq_id)

    def has_unfinished(self) -> bool:
        """Whether any request is still in flight."""
        return bool(self._requests)

    def stats(self) -> EngineStats:
        """The last snapshot (refreshed after every step)."""
        return dataclasses.replace(self._stats)

    def generate(self, prompt_ids: list[int], params: SamplingParams,
                 request_id: str | None = None) -> Iterator[CompletionDelta]:
        """Run steps until this request ends, yielding its deltas (closing early aborts it)."""
        rid = request_id or f"gen-{next(self._seq_ids)}"
        self.add_request(rid, prompt_ids, params)
        done = False
        try:
            while not done:
                for event_rid, delta in self.step():
                    if event_rid != rid:
                        continue
                    done = isinstance(delta, RequestFailed) or delta.usage is not None
                    if isinstance(delta, RequestFailed):
                        raise delta
                    yield delta
        finally:
            if not done:
                self.abort(rid)

    # -- the loop -----------------------------------------------------------------------------
    def step(self) -> list[Event]:
        """One iteration: schedule, prepare the batch, forward, sample, postprocess."""
        out = self.scheduler.schedule()
        self._stats.num_preemptions += len(out.preempted)
        events = [event for seq in out.rejected for event in self._reject(seq)]
        if out.chunks:
            drafts = self.speculator.propose(self, out.chunks) if self.speculator else {}
            batch, rows = self._prepare(out.chunks, drafts)
            logits = self._forward(batch, out.chunks)  # [len(rows) + drafted tokens, V]
            if drafts:  # drafted rows leave with 1 + accepted tokens each
                rows, logits, verified = self.speculator.verify(self, rows, logits, drafts)
                events += self._postprocess(*verified)
            rows, logits = self._fork(rows, logits)
            events += self._postprocess(rows, [[r] for r in self._sample(rows, logits)])
        self._refresh_stats()
        return events

    def _prepare(self, chunks: list[ScheduledChunk],
                 drafts: dict[int, list[int]]) -> tuple[ForwardBatch, list[Row]]:
        """Flatten the chunks into one batch; rows are the chunks reaching their sequence's last
        token (a token is sampled for them). A row's draft tokens follow it, one logits row each."""
        ids: list[int] = []  # [T]
        positions: list[int] = []  # [T]
        batch_chunks: list[SequenceChunk] = []
        rows: list[Row] = []
        for chunk in chunks:
            seq, n = chunk.seq, chunk.num_tokens
            start = seq.num_computed_tokens
            req, state = self._by_seq[seq.seq_id]
            if state.cached_tokens is None:  # first chunk: what the prefix cache supplied
                state.cached_tokens = min(start, seq.num_prompt_tokens)
            needs_logits = start + n >= seq.num_tokens
            draft = drafts.get(seq.seq_id, ())
            ids += seq.token_ids[start:start + n]
            ids += draft
            positions += range(start, start + n + len(draft))
            batch_chunks.append(SequenceChunk(seq.seq_id, start, n + len(draft), needs_logits,
                                              adapter=req.params.adapter,
                                              num_logits=1 + len(draft)))
            if needs_logits:
                rows.append((req, state))
        return ForwardBatch(torch.tensor(ids, dtype=torch.long),
                            torch.tensor(positions, dtype=torch.long), batch_chunks), rows

    def _forward(self, batch: ForwardBatch, chunks: list[ScheduledChunk]) -> torch.Tensor:
        """Run the model (KV written for every token); returns logits ``[rows, V]``."""
        self.kv_cache.begin_step(batch)
        logits = self.model.forward(batch, self.kv_cache)  # [rows, V] float32
        for chunk in chunks:
            seq = chunk.seq
            seq.num_computed_tokens += chunk.num_tokens
            self.kv_cache.commit(seq.seq_id, seq.prefix_keys, seq.num_computed_tokens)
        self._stats.num_steps += 1
        return logits

    def _fork(self, rows: list[Row], logits: torch.Tensor) -> tuple[list[Row], torch.Tensor]:
        """n > 1: fork choice 0's held-back siblings once its prompt is computed; each samples
        its first token from a copy of choice 0's logits row (``[rows + forked, V]``)."""
        if not self._fork_enabled:
            return rows, logits
        parents: list[int] = []
        forked: list[Row] = []
        for row, (req, state) in enumerate(rows):
            if state.index == 0 and req.held_back:
                for child in req.fork_held_back(self.kv_cache):
                    forked.append((req, child))
                    parents.append(row)
        if not forked:
            return rows, logits
        return rows + forked, logits[list(range(len(rows))) + parents]

    def _sample(self, rows: list[Row], logits: torch.Tensor) -> list[tuple[int, Any]]:
        """One ``(token, logprob or None)`` per row of ``logits [rows, V]``."""
        eos = self.tokenizer.eos_ids
        return sample(logits, [SamplingRow(req.params, req.prompt_ids, state.output_ids,
                                           state.generator, eos, state.constraint)
                               for req, state in rows])

    def _postprocess(self, rows: list[Row],
                     results: list[list[tuple[int, Any]]]) -> list[Event]:
        """Append each row's new tokens (more than one after speculation) until one ends the
        choice, detokenize and check stops, let waiting choices join; one delta per row."""
        now = time.monotonic()
        events: list[Event] = []
        for (req, state), tokens in zip(rows, results, strict=True):
            delta = CompletionDelta(state.index, "", [], [] if tokens[0][1] is not None else None)
            for token, logprob in tokens:
                state.seq.token_ids.append(token)
                state.output_ids.append(token)
                self._stats.generation_tokens_total += 1
                if state.index == 0:
                    req.token_times.append(now)
                step = state.stop.add(token)
                delta.text += step.text
                delta.token_ids.append(token)
                if delta.logprobs is not None:
                    delta.logprobs.append(logprob)
                if step.finish_reason is not None:
                    break
            if req.first_token_time is None:
                req.first_token_time = now
            for joining in req.joining(state):
                self.scheduler.add(joining.seq)
            if step.finish_reason is not None:
                self.scheduler.finish(state.seq.seq_id)
                events.append(self._finish_seq(req, state, step.finish_reason, delta))
            else:
                events.append((req.request_id, delta))
        return events

    def _finish_seq(self, req: Request, state: SeqState, reason: str,
                    delta: CompletionDelta | None = None) -> Event:
        state.finish_reason = reason
        self._by_seq.pop(state.seq.seq_id, None)
        delta = delta or CompletionDelta(state.index, "")
        delta.finish_reason = reason
        if req.finished:
            delta.usage = Usage(len(req.prompt_ids), req.completion_tokens, req.cached_tokens)
            self._requests.pop(req.request_id, None)
            self._stats.num_requests_finished += 1
            self._notify(req, reason)
        return req.request_id, delta

    def _reject(self, seq) -> list[Event]:
        """The scheduler can never run ``seq``: fail its request with a readable error."""
        found = self._by_seq.get(seq.seq_id)
        if found is None:
            return []
        req, _ = found
        self.abort(req.request_id)
        message = (f"request {req.request_id!r} needs {seq.num_tokens} tokens of KV cache but "
                   f"the cache holds only {self.kv_cache.capacity_tokens()}; use a larger "
                   f"--num-blocks / KV memory budget or a shorter prompt")
        return [(req.request_id, RequestFailed(message))]

    def _notify(self, req: Request, reason: str) -> None:
        if not self._observers:
            return
        metrics = RequestMetrics(
            request_id=req.request_id, prompt_tokens=len(req.prompt_ids),
            completion_tokens=req.completion_tokens, cached_tokens=req.cached_tokens,
            arrival_time=req.arrival_time, first_token_time=req.first_token_time,
            finish_time=time.monotonic(), token_times=list(req.token_times),
            finish_reason=reason,
            num_preemptions=sum(s.seq.num_preemptions for s in req.seqs))
        for callback in self._observers:
            try:
                callback(metrics)
            except Exception:  # an observer must never take the engine down
                pass

    def _refresh_stats(self) -> None:
        s = self._stats
        s.num_running = self.scheduler.num_running()
        s.num_waiting = self.scheduler.num_waiting()
        s.kv_usage = self.kv_cache.usage()
        s.kv_free_tokens = self.kv_cache.free_tokens()
        s.num_requests = len(self._requests)
        if self.speculator is not None:
            s.spec_draft_tokens, s.spec_accepted_tokens, s.spec_rows = self.speculator.counts()

    # -- embeddings ---------------------------------------------------------------------------
    def embed(self, prompt_ids_list: list[list[int]]) -> list[list[float]]:
        """Mean-pooled, output-normed hidden states per input (``NotImplementedError`` if the
        model cannot embed)."""
        for ids in prompt_ids_list:
            validate(ids, SamplingParams(max_tokens=None), vocab_size=self.vocab_size,
                     max_model_len=self.max_model_len + 1, prompt_param="input")
        vectors: list[list[float]] = []
        for ids in prompt_ids_list:  # one at a time: bounded KV use beside running requests
            seq_id = -next(self._seq_ids)  # negative: never collides with generation ids
            if not self.kv_cache.can_allocate(seq_id, len(ids)):
                raise InvalidRequest(f"input of {len(ids)} tokens does not fit in the free KV "
                                     f"cache now; retry later", param="input")
            self.kv_cache.allocate(seq_id, len(ids))
            try:
                batch = ForwardBatch(torch.tensor(ids, dtype=torch.long),
                                     torch.arange(len(ids), dtype=torch.long),
                                     [SequenceChunk(seq_id, 0, len(ids), False)])
                self.kv_cache.begin_step(batch)
                pooled = self.model.embed(batch, self.kv_cache)  # [1, hidden]
                vectors.append(pooled[0].tolist())
            finally:
                self.kv_cache.free(seq_id)
        return vectors

