"""Moshi's language model: a temporal transformer over 17 token streams and a depformer per frame.

Parameter names are those of Kyutai's MLX release (`text_emb`, `audio_embs.{i}`, `transformer.*`,
`out_norm`, `text_linear`, `depformer.slices.{k}.{emb, linear_in, linear_out, transformer.*}`), so those
files load unrenamed. Streams: 0 is text, 1..dep_q Moshi's audio codebooks, the rest the user's.

The temporal transformer streams through RingKVCaches held in an `LmState` value (each step returns the
next state); the depformer runs dep_q steps inside one frame, each with its own slice of weights and one
cache shared by all slices.
"""

from __future__ import annotations

from typing import NamedTuple

import mlx.core as mx
import mlx.nn as nn

from .config import LmConfig
from .config.conditioner import CONDITIONS
from .dtypes import FLOATS
from .modules.conditioner import ConditionProvider
from .modules.embedding import ScaledEmbedding, StackedRows, mask_zero_tokens, zero_tokens
from .modules.kv_cache import Offset, RingKVCache
from .modules.transformer import RotaryTable, Transformer, TransformerState, add_projection, make_norm


def check_kv_bits(bits: int | None) -> None:
    """Only an 8-bit KV cache is offered: at 4 bits greedy agreement fell to 0.82 (text) / 0.70 (audio)."""
    if bits not in (None, 8):
        raise ValueError(f"kv_bits must be None or 8, got {bits!r}")


class LmState(NamedTuple):
    """Streaming state of the temporal transformer (one ring KV cache per layer)."""

    temporal: TransformerState

    @property
    def offset(self) -> Offset:
        return self.temporal.offset

    def arrays(self) -> list[mx.array]:
        return self.temporal.arrays()

    def window(self, bucket: int | None) -> int | None:
        """The slots of the temporal ring the next step attends over: the written ones rounded up to a
        multiple of `bucket` until the ring wraps (`RingKVCache.window`); None: all of them."""
        cache = self.temporal.caches[0]
        assert isinstance(cache, RingKVCache)  # the temporal transformer streams through rings
        return None if bucket is None else cache.window(1, bucket)

    @classmethod
    def from_arrays(cls, arrays: list[mx.array], offset: Offset, layers: int) -> LmState:
        """The state of a `layers`-layer temporal transformer holding `arrays` (as `arrays()` lists them)."""
        return cls(TransformerState.from_arrays(arrays, offset, layers))


class DepformerSlice(nn.Module):
    """Weights generating one codebook: input projection, previous-token embedding, stack, output head."""

    def __init__(self, cfg: LmConfig, in_vocab: int):
        super().__init__()
        assert cfg.depformer is not None  # slices exist only for dep_q > 0
        dep = cfg.depformer.transformer
        self.emb = ScaledEmbedding(in_vocab, dep.d_model)
        self.linear_in = nn.Linear(cfg.dim, dep.d_model, bias=False)
        self.linear_out = nn.Linear(dep.d_model, cfg.card, bias=False)
        self.transformer = Transformer(dep)


class Depformer(nn.Module):
    def __init__(self, cfg: LmConfig):
        super().__init__()
        # Slice 0 embeds the text token just sampled; slice k > 0 the audio token of codebook k - 1.
        slices = 0 if cfg.depformer is None else cfg.depformer.num_slices  # the file's (PersonaPlex: 16; STT: 0)
        self.slices = [DepformerSlice(cfg, cfg.text_card + 1 if k == 0 else cfg.card + 1) for k in range(slices)]

    def init_state(self, batch: int, dtype: mx.Dtype) -> TransformerState:
        """Fresh caches for one frame (dep_q steps, within the depformer's context of dep_q), shared by all
        slices: frame caches (`FrameKVCache`), which grow one step at a time and need no mask."""
        return self.slices[0].transformer.init_state(batch, dtype, frame=True)

    def step(
        self, k: int, context: mx.array, prev_token: mx.array, state: TransformerState, sampled: bool = False
    ) -> tuple[mx.array, TransformerState]:
        """(Logits [B, card] of codebook k, the state for codebook k + 1).

        Args:
            k: slice (codebook) index; steps must come in order 0..dep_q-1 over one state.
            context: [B, 1, dim] normed temporal transformer output of this frame.
            prev_token: [B] int, the text token (k = 0) or the audio token of codebook k - 1.
            sampled: `prev_token` was just drawn, so it is never the "no input" id (-1): its embedding row
                is taken as it is and added by the input projection's addmm (3 operations fewer per
                codebook in a compiled step; the sum rounds as an addmm does, about 1e-7 relative).
        """
        s = self.slices[k]
        rows = context.reshape(-1, context.shape[-1])  # [B, dim]: the slices compute on 2-D rows
        if sampled:
            x = add_projection(s.emb.rows(prev_token).astype(context.dtype), s.linear_in, rows)
        else:
            x = s.linear_in(rows) + s.emb(prev_token).astype(context.dtype)
        y, state = s.transformer.step_rows(x, rows.shape[0], state)
        return s.linear_out(y), state


def default_compute_dtype(quantized: bool, param_dtype: mx.Dtype) -> mx.Dtype:
    """float32 activations for quantized weights on CPU (MLX's CPU kernels are ~8x faster than with
    bf16 activations); otherwise the weights' own dtype."""
    if quantized and mx.default_device() == mx.cpu:
        return mx.float32
    return param_dtype if param_dtype in FLOATS.values() else mx.float32


class Lm(nn.Module):
    """Moshi's LM. Activations are computed in `compute_dtype`, which follows the parameters: cast the model
    with `set_dtype` (mx.float32 for exact parity with the reference) and its arithmetic follows."""

    def __init__(self, cfg: LmConfig):
        super().__init__()
        self.cfg = cfg
        dim = cfg.dim
        self.text_emb = ScaledEmbedding(cfg.text_card + 1, dim)
        self.audio_embs = [ScaledEmbedding(cfg.card + 1, dim) for _ in range(cfg.n_q)]
        self.transformer = Transformer(cfg.transformer)
        self.out_norm = make_norm(cfg.transformer.norm, dim)
        self.text_linear = nn.Linear(dim, cfg.text_card, bias=False)
        self.depformer = Depformer(cfg)  # no slices when dep_q is 0 (speech-to-text)
        if cfg.conditioners:  # Hibiki's "description"
            self.condition_provider = ConditionProvider(cfg.conditioners, dim)
        # the reference's extra heads (STT 1B: voice activity / end of turn), read by stt.py off the normed output
        self.extra_heads = [nn.Linear(dim, cfg.extra_heads_dim, bias=False) for _ in range(cfg.extra_heads_num_heads)]
        self._compute_dtype: mx.Dtype | None = None  # None: follow the parameters (set_compute_dtype)
        self._stacked: StackedRows | None = None  # stack_embeddings
        self._kv_bits: int | None = None

    @property
    def compute_dtype(self) -> mx.Dtype:
        """The activations' dtype: the weights' float dtype, or float32 for quantized weights on CPU
        (`default_compute_dtype`), unless `set_compute_dtype` chose one."""
        if self._compute_dtype is not None:
            return self._compute_dtype
        return default_compute_dtype(self.is_quantized, self.cache_dtype)

    def set_compute_dtype(self, dtype: mx.Dtype | None) -> None:
        """Compute in `dtype` whatever the weights' dtype (e.g. bf16 weights with float32 activations, a
        reference that costs no extra memory), until the next `set_dtype`; None: follow the parameters."""
        self._compute_dtype = dtype

    def set_dtype(self, dtype: mx.Dtype, *args, **kwargs) -> None:
        """nn.Module.set_dtype; the activations follow the cast parameters (a chosen compute dtype is dropped);
        stacked embeddings are stacked again in the new dtype."""
        restack = self._stacked is not None
        self._stacked = None  # the old dtype's table goes before the cast makes the new one
        super().set_dtype(dtype, *args, **kwargs)
        self._compute_dtype = None
        if restack:
            self.stack_embeddings()

    @property
    def is_quantized(self) -> bool:
        return isinstance(self.text_linear, nn.QuantizedLinear)

    @property
    def kv_bits(self) -> int | None:
        """Bits of the temporal KV cache's values: 8, or None when stored unquantized."""
        return self._kv_bits

    def set_kv_bits(self, bits: int | None) -> None:
        """Store the temporal transformer's KV caches at 8 bits from the next init_state: the 7B's 3000-step
        cache takes 0.82 GiB instead of 1.46 GiB in bfloat16 (4-bit 7B peak: 5.35 instead of 5.99 GiB, and
        no slower). None: unquantized, as the reference."""
        check_kv_bits(bits)
        self._kv_bits = bits

    def init_state(self, batch: int = 1) -> LmState:
        # an 8-bit cache keeps its scales in the compute dtype: the quantized attention matmuls then take
        # the activations as they are (MLX's CPU kernels are ~8x slower with bfloat16 activations)
        dtype = self.cache_dtype if self._kv_bits is None else self.compute_dtype
        return LmState(self.transformer.init_state(batch, dtype, self._kv_bits))

    @property
    def cache_dtype(self) -> mx.Dtype:
        """KV caches are stored in the weights' float dtype: bfloat16 for released files unless the model
        was cast (float32 for exact parity). Quantized 7B with float32 activations thus keeps a 1.5 GiB
        rather than 3 GiB cache; attention reads it in the compute dtype."""
        dtype = self.out_norm.weight.dtype
        return dtype if dtype in FLOATS.values() else mx.float32

    def _summed_tables(self) -> list[nn.Module]:
        """The embedding tables `embed` sums, in the reference's order: audio streams 1..n_q, then the text."""
        return [*self.audio_embs, self.text_emb]

    def stack_embeddings(self) -> None:
        """Stack the tables `embed` sums into one (their parameters become views of it: no second copy once
        the originals are dropped) for one lookup per step; the loaders call it once the weights are final.
        To change a table afterwards, assign a new array to its parameter (`embed` then looks rows up table by
        table); an item assignment into a loaded table (`lm.text_emb.weight[i] = ...`) would not be seen."""
        tables = self._summed_tables()
        self._stacked = StackedRows(tables) if StackedRows.stackable(tables) else None

    def embed(self, tokens: mx.array, condition: mx.array | None = None) -> mx.array:
        """tokens [B, 1 + n_q, T] int (text first) -> summed embeddings [B, T, dim]; plus `condition`
        [B, dim] (see `condition`) at every step, cast to the weights' dtype first as the reference does."""
        stacked = self._stacked
        if stacked is not None and not stacked.valid(self._summed_tables()):
            stacked = self._stacked = None  # a table was replaced: let go of the stacked copy
        x = self._embed_by_table(tokens) if stacked is None else self._embed_stacked(stacked, tokens)
        dt = self.compute_dtype
        return x if condition is None else x + condition[:, None].astype(self.cache_dtype).astype(dt)

    def _embed_stacked(self, stacked: StackedRows, tokens: mx.array) -> mx.array:
        """`embed` with one lookup: the streams reordered as the sum goes (audio, then text), each row zeroed
        at -1, then added one after the other in the compute dtype as the reference adds them: the last row of
        a running sum (mx.sum would round a bfloat16 sum once instead of at each addition, and 17 slices added
        up cost 19 operations instead of 3)."""
        b, k, t = tokens.shape
        order = mx.array([*range(1, k), 0], mx.int32)
        flat = mx.take(tokens, order, axis=1).transpose(1, 0, 2).reshape(k, b * t)
        rows = mask_zero_tokens(zero_tokens(flat), stacked.rows(mx.maximum(flat, 0))).astype(self.compute_dtype)
        return mx.cumsum(rows, axis=0)[-1].reshape(b, t, -1)

    def _embed_by_table(self, tokens: mx.array) -> mx.array:
        dt = self.compute_dtype
        # every stream's ids clamped and tested for the zero token at once, then cut by stream: a compiled step
        # pays per operation (the sum is the same: audio streams in order, then the text, each row zeroed at -1)
        b, k, t = tokens.shape
        flat = tokens.transpose(1, 0, 2).reshape(k, b * t)
        ids = mx.split(mx.maximum(flat, 0), k, axis=0)  # [1, B*T] each
        zero = mx.split(zero_tokens(flat), k, axis=0)

        def row(emb, i: int) -> mx.array:
            return mask_zero_tokens(zero[i], emb.rows(ids[i])).astype(dt)  # [1, B*T, dim]

        x = row(self.audio_embs[0], 1)
        for i in range(1, self.cfg.n_q):
            x = x + row(self.audio_embs[i], i + 1)
        return (x + row(self.text_emb, 0)).reshape(b, t, -1)

    def condition(self, values: dict[str, list[str]] | None = None) -> mx.array | None:
        """{conditioner: one value per batch row} -> the condition [B, dim] float32 to pass to forward_text
        and step_text; None: the values the reference runs this model with (Hibiki: "very_good"), one row.
        None for a model without conditioners."""
        if "condition_provider" not in self:
            return None
        if values is None:
            values = {k: [v] for k, v in CONDITIONS[self.cfg.model_type][0].items()}
        return self.condition_provider(values)

    def forward_text(self, tokens: mx.array, condition: mx.array | None = None) -> tuple[mx.array, mx.array]:
        """Temporal transformer over a whole sequence of tokens [B, 1 + n_q, T] (batch mode), and a
        condition [B, dim] (see `embed`).

        Returns:
            context: [B, T, dim] normed output (the depformer's input); text_logits: [B, T, text_card].
        """
        out = self.out_norm(self.transformer(self.embed(tokens, condition)))
        return out, self.text_linear(out)

    def step_text(
        self,
        tokens: mx.array,
        state: LmState,
        rope: RotaryTable | None = None,
        window: int | None = None,
        condition: mx.array | None = None,
    ) -> tuple[mx.array, mx.array, LmState]:
        """Temporal transformer streaming the next tokens [B, 1 + n_q, T] -> (context, text_logits, as
        `forward_text`, and the next state). `rope` and `window`: see `Transformer.step` (a compiled step
        passes its RoPE table); `condition`: see `embed`."""
        out, temporal = self.transformer.step(self.embed(tokens, condition), state.temporal, rope, window)
        out = self.out_norm(out)
        return out, self.text_linear(out), LmState(temporal)

    def depformer_logits(self, context: mx.array, tokens: mx.array) -> mx.array:
        """Teacher-forced depformer: context [B, 1, dim], tokens [B, 1 + dep_q] -> logits [B, dep_q, card].

        Codebook k sees tokens[:, k] (the text token for k = 0) as its previous token.
        """
        state = self.depformer.init_state(context.shape[0], self.compute_dtype)
        logits = []
        for k in range(self.cfg.dep_q):
            lk, state = self.depformer.step(k, context, tokens[:, k], state)
            logits.append(lk)
        return mx.stack(logits, axis=1)

    def teacher_forced(
        self, codes: mx.array, state: LmState | None = None, condition: mx.array | None = None
    ) -> tuple[mx.array, mx.array]:
        """Logits for a whole code sequence, aligned with it, as the reference's `LMModel.forward`.

        Args:
            codes: [B, 1 + n_q, T] int, undelayed (text first).
            state: stream the sequence through this state's KV caches (one chunk of T <= context steps)
                instead of batch attention: what generation sees, e.g. with a quantized cache.
            condition: [B, dim] from `condition` for a conditioned model (Hibiki), else None.

        Returns:
            text_logits [B, 1, T, text_card] and audio_logits [B, dep_q, T, card] in float32; positions a
            delayed stream cannot predict (its last `delay` steps) are NaN.
        """
        cfg = self.cfg
        b, k, t = codes.shape
        initial = mx.array([cfg.text_initial_token_id] + [cfg.initial_token_id] * cfg.n_q, mx.int32)
        rows = []
        for i, d in enumerate(cfg.delays):  # delay each stream, padding its start with the initial token
            head = mx.broadcast_to(initial[i], (b, d)) if d else None
            row = codes[:, i, : t - d]
            rows.append(row if head is None else mx.concatenate([head, row], axis=1))
        delayed = mx.stack(rows, axis=1)  # [B, K, T]
        inputs = mx.concatenate([mx.broadcast_to(initial[None, :, None], (b, k, 1)), delayed[:, :, :-1]], axis=2)
        if state is None:
            context, text_logits = self.forward_text(inputs, condition)
        else:
            context, text_logits, _ = self.step_text(inputs, state, condition=condition)
        if cfg.dep_q == 0:  # speech-to-text: no depformer, no audio logits
            return _undelay(text_logits.astype(mx.float32)[:, None], cfg.delays[:1]), mx.zeros((b, 0, t, cfg.card))
        flat = context.reshape(b * t, 1, -1)
        targets = delayed[:, : cfg.dep_q + 1].transpose(0, 2, 1).reshape(b * t, cfg.dep_q + 1)
        audio = self.depformer_logits(flat, targets).reshape(b, t, cfg.dep_q, -1).transpose(0, 2, 1, 3)
        audio = _undelay(audio.astype(mx.float32), cfg.delays[1 : cfg.dep_q + 1])
        text = _undelay(text_logits.astype(mx.float32)[:, None], cfg.delays[:1])
        return text, audio


def _undelay(logits: mx.array, delays: tuple[int, ...]) -> mx.array:
    """[B, K, T, V] in the delayed domain -> aligned with the undelayed codes; NaN where unknown."""
    t = logits.shape[2]
    rows = []
    for i, d in enumerate(delays):
        row = logits[:, i, d:]
        if d:
            row = mx.concatenate([row, mx.full((row.shape[0], d, row.shape[2]), float("nan"))], axis=1)
        rows.append(row[:, :t])
    return mx.stack(rows, axis=1)
