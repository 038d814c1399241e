"""Mimi: Kyutai's streaming neural audio codec (24 kHz mono <-> 12.5 Hz discrete codes).

Public layout at the edge is the reference's: audio [B, 1, T], codes [B, K, F]. Inside, everything is
channels-last [B, T, C]. Streaming state is explicit (`init_state`, `stream_encode`, `stream_decode`);
`encode_step` / `decode_step` / `reset` are a thin facade keeping one state on the instance.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import mlx.core as mx
import mlx.nn as nn

from .compiled import compile_by_default
from .config import MimiConfig
from .modules.conv import ConvState, ConvTrState, StreamingConv1d, StreamingConvTranspose1d
from .modules.quantizer import SplitResidualVectorQuantizer
from .modules.seanet import SeanetDecoder, SeanetEncoder, SeanetState
from .modules.state_tree import arrays_of, rebuild
from .modules.transformer import ProjectedTransformer, RotaryTable, TransformerState


class MimiState(NamedTuple):
    """Everything Mimi remembers between frames (encode side, then decode side)."""

    encoder: SeanetState
    encoder_transformer: TransformerState
    downsample: ConvState
    upsample: ConvTrState
    decoder_transformer: TransformerState
    decoder: SeanetState


class ConvDownsample(nn.Module):
    """Learnt stride-S downsampling (kernel 2S, replicate-padded, no bias), as the reference's."""

    def __init__(self, dim: int, stride: int):
        super().__init__()
        self.conv = StreamingConv1d(dim, dim, 2 * stride, stride, bias=False, pad_mode="replicate")


class ConvTrUpsample(nn.Module):
    """Learnt stride-S upsampling: depthwise transposed conv (kernel 2S, no bias)."""

    def __init__(self, dim: int, stride: int):
        super().__init__()
        self.convtr = StreamingConvTranspose1d(dim, dim, 2 * stride, stride, groups=dim, bias=False)


def _check_pcm(pcm: mx.array, what: str, multiple: int | None) -> None:
    if not isinstance(pcm, mx.array):
        raise ValueError(f"{what} expects an mx.array of audio [B, 1, T], got {type(pcm).__name__}")
    if pcm.ndim != 3 or pcm.shape[1] != 1:
        raise ValueError(f"{what} expects mono audio shaped [B, 1, T], got shape {tuple(pcm.shape)}")
    if not mx.issubdtype(pcm.dtype, mx.floating):
        raise ValueError(f"{what} expects float audio in [-1, 1], got dtype {pcm.dtype}")
    if multiple is not None and (pcm.shape[2] == 0 or pcm.shape[2] % multiple):
        raise ValueError(
            f"{what} expects a whole number of {multiple}-sample frames, got {pcm.shape[2]} samples; "
            "buffer the audio into frames before streaming it"
        )
    if pcm.shape[0] == 0 or pcm.shape[2] == 0:
        raise ValueError(f"{what} got empty audio of shape {tuple(pcm.shape)}")


class Mimi(nn.Module):
    """The codec. Build with a MimiConfig, load with `load_mimi`, which also calls `post_load()`."""

    _steps: dict[tuple, Callable]

    def __init__(self, cfg: MimiConfig):
        super().__init__()
        self._cfg = cfg
        dim = cfg.seanet.dimension
        self.encoder = SeanetEncoder(cfg.seanet)
        self.decoder = SeanetDecoder(cfg.seanet)
        self.encoder_transformer = ProjectedTransformer(cfg.transformer, dim, (dim,))
        self.decoder_transformer = ProjectedTransformer(cfg.transformer, dim, (dim,))
        self.quantizer = SplitResidualVectorQuantizer(cfg.quantizer)
        self.downsample = ConvDownsample(dim, cfg.resample_stride)
        self.upsample = ConvTrUpsample(dim, cfg.resample_stride)
        self._num_codebooks = cfg.num_codebooks
        self._state: MimiState | None = None
        self.compiled = compile_by_default()  # streaming steps compiled (MOSHI_MLX_COMPILE=0: op by op)
        # compiled steps by setting; set as a plain attribute (nn.Module would adopt a dict as a child)
        object.__setattr__(self, "_steps", {})

    # ---- configuration ----
    @property
    def config(self) -> MimiConfig:
        return self._cfg

    @property
    def frame_size(self) -> int:
        return self._cfg.frame_size

    @property
    def sample_rate(self) -> int:
        return self._cfg.sample_rate

    @property
    def frame_rate(self) -> float:
        return self._cfg.frame_rate

    @property
    def cardinality(self) -> int:
        return self._cfg.cardinality

    @property
    def num_codebooks(self) -> int:
        return self._num_codebooks

    @property
    def total_codebooks(self) -> int:
        return self.quantizer.total_codebooks

    def set_num_codebooks(self, n: int) -> None:
        """Codebooks that encode produces (1 semantic + n - 1 acoustic); at most what the weights hold."""
        if not self._cfg.quantizer.n_q_semantic <= n <= self.total_codebooks:
            raise ValueError(
                f"num_codebooks must be between {self._cfg.quantizer.n_q_semantic} and {self.total_codebooks}, got {n}"
            )
        self._num_codebooks = n

    def post_load(self) -> None:
        """Derive buffers from loaded weights (codebook centroids). `load_mimi` calls it once, after
        loading and any dtype cast."""
        self.quantizer.post_load()
        mx.eval(self.parameters())

    @property
    def _dtype(self) -> mx.Dtype:
        return self.encoder.model[0].weight.dtype

    # ---- explicit-state streaming ----
    def init_state(self, batch: int = 1) -> MimiState:
        """A fresh streaming state for `batch` parallel streams."""
        if batch < 1:
            raise ValueError(f"batch must be positive, got {batch}")
        return MimiState(
            encoder=self.encoder.init_state(batch),
            encoder_transformer=self.encoder_transformer.init_state(batch),
            downsample=self.downsample.conv.init_state(batch),
            upsample=self.upsample.convtr.init_state(batch),
            decoder_transformer=self.decoder_transformer.init_state(batch),
            decoder=self.decoder.init_state(batch),
        )

    def stream_encode(self, pcm: mx.array, state: MimiState) -> tuple[mx.array, MimiState]:
        """Encode the next whole frames of audio [B, 1, k * frame_size] -> (codes [B, K, k], new state).

        `state` is left unchanged.
        """
        _check_pcm(pcm, "stream_encode", self.frame_size)
        self._check_batch(state, pcm.shape[0])
        part = (state.encoder, state.encoder_transformer, state.downsample)
        steps = pcm.shape[2] // self._cfg.seanet.hop_length  # transformer steps
        codes, (enc, tr, down) = self._run_step("encode", self._encode_part, pcm, part, steps)
        return codes, state._replace(encoder=enc, encoder_transformer=tr, downsample=down)

    def stream_decode(self, codes: mx.array, state: MimiState) -> tuple[mx.array, MimiState]:
        """Decode the next frames of codes [B, K, k] -> (audio [B, 1, k * frame_size] float32, new state);
        `state` is left unchanged."""
        self._check_codes(codes, "stream_decode")
        self._check_batch(state, codes.shape[0])
        part = (state.upsample, state.decoder_transformer, state.decoder)
        steps = codes.shape[2] * self._cfg.resample_stride
        pcm, (up, tr, dec) = self._run_step("decode", self._decode_part, codes, part, steps)
        return pcm, state._replace(upsample=up, decoder_transformer=tr, decoder=dec)

    def _encode_part(self, pcm: mx.array, part: tuple, rope: RotaryTable | None) -> tuple[mx.array, tuple]:
        enc_state, tr_state, down_state = part
        x = pcm.astype(self._dtype).transpose(0, 2, 1)  # [B, T, 1]
        emb, enc = self.encoder.step(x, enc_state)
        emb = self.encoder_transformer.input_step(emb)
        emb, tr = self.encoder_transformer.transformer.step(emb, tr_state, rope)
        (emb,) = self.encoder_transformer.output_step(emb)
        emb, down = self.downsample.conv.step(emb, down_state)  # [B, k, D]
        codes = self.quantizer.encode(emb, self._num_codebooks)
        return codes.transpose(0, 2, 1), (enc, tr, down)

    def _decode_part(self, codes: mx.array, part: tuple, rope: RotaryTable | None) -> tuple[mx.array, tuple]:
        up_state, tr_state, dec_state = part
        emb = self.quantizer.decode(codes.transpose(0, 2, 1))  # [B, k, D]
        emb, up = self.upsample.convtr.step(emb, up_state)
        emb = self.decoder_transformer.input_step(emb)
        emb, tr = self.decoder_transformer.transformer.step(emb, tr_state, rope)
        (emb,) = self.decoder_transformer.output_step(emb)
        out, dec = self.decoder.step(emb, dec_state)
        return out.transpose(0, 2, 1).astype(mx.float32), (up, tr, dec)

    def _run_step(self, kind: str, fn: Callable, x: mx.array, part: tuple, steps: int) -> tuple[mx.array, tuple]:
        """Run one streaming half (`_encode_part` / `_decode_part`), compiled unless `self.compiled` is off:
        its state as a flat list of arrays, the transformer's offset as an int32 array and its RoPE table made
        on the host, so that one trace serves every frame."""
        offset = part[1].offset
        assert isinstance(offset, int)  # a traced offset lives only inside the compiled step
        transformer = (self.encoder_transformer if kind == "encode" else self.decoder_transformer).transformer
        rope = transformer.rope(offset, steps)
        if not self.compiled:
            return fn(x, part, rope)
        key = (kind, self._num_codebooks, self._dtype)
        if key not in self._steps:

            def arrays_step(x, offset, table, arrays):
                layout = self._layout(kind)
                y, new = fn(x, rebuild(layout, arrays, offset), RotaryTable(*table) if table else None)
                return y, arrays_of(new)

            self._steps[key] = mx.compile(arrays_step)
        table = [] if rope is None else list(rope)
        y, arrays = self._steps[key](x, mx.array(offset, mx.int32), table, arrays_of(part))
        return y, rebuild(part, arrays, offset + steps)

    def _layout(self, kind: str) -> tuple:
        """The structure of one half's state (any state of this Mimi has it; its arrays are not used)."""
        s = self.init_state(1)
        if kind == "encode":
            return (s.encoder, s.encoder_transformer, s.downsample)
        return (s.upsample, s.decoder_transformer, s.decoder)

    # ---- batch ----
    def encode_latent(self, pcm: mx.array) -> mx.array:
        """Audio [B, 1, T] -> the continuous latent before quantization [B, D, ceil(T / frame_size)]."""
        return self._encode_latent(pcm).transpose(0, 2, 1)

    def encode(self, pcm: mx.array) -> mx.array:
        """Audio [B, 1, T] at 24 kHz -> codes [B, K, ceil(T / frame_size)] (int32).

        As the reference, the end is zero-padded to a whole frame.
        """
        codes = self.quantizer.encode(self._encode_latent(pcm), self._num_codebooks)
        return codes.transpose(0, 2, 1)

    def decode(self, codes: mx.array) -> mx.array:
        """Codes [B, K, F] -> audio [B, 1, F * frame_size] (float32)."""
        self._check_codes(codes, "decode")
        emb = self.quantizer.decode(codes.transpose(0, 2, 1))
        emb = self.upsample.convtr(emb)
        (emb,) = self.decoder_transformer(emb)
        return self.decoder(emb).transpose(0, 2, 1).astype(mx.float32)

    def _encode_latent(self, pcm: mx.array) -> mx.array:
        _check_pcm(pcm, "encode", None)
        t = pcm.shape[2]
        frames = -(-t // self.frame_size)
        x = pcm.astype(self._dtype).transpose(0, 2, 1)
        if frames * self.frame_size != t:
            x = mx.pad(x, [(0, 0), (0, frames * self.frame_size - t), (0, 0)])
        emb = self.encoder(x)
        (emb,) = self.encoder_transformer(emb)
        return self.downsample.conv(emb)  # [B, F, D]

    # ---- facade: one implicit stream ----
    def reset(self) -> None:
        """Forget all streaming state: the next step behaves exactly like a fresh model's."""
        self._state = None

    def encode_step(self, frame: mx.array) -> mx.array:
        """Streaming encode of whole frames [B, 1, k * 1920] -> codes [B, K, k]."""
        _check_pcm(frame, "encode_step", self.frame_size)
        codes, self._state = self.stream_encode(frame, self._facade_state(frame.shape[0]))
        return codes

    def decode_step(self, codes: mx.array) -> mx.array:
        """Streaming decode of codes [B, K, k] -> audio [B, 1, k * 1920]."""
        self._check_codes(codes, "decode_step")
        pcm, self._state = self.stream_decode(codes, self._facade_state(codes.shape[0]))
        return pcm

    def _facade_state(self, batch: int) -> MimiState:
        if self._state is None:
            self._state = self.init_state(batch)
        return self._state

    # ---- validation ----
    def _check_codes(self, codes: mx.array, what: str) -> None:
        if not isinstance(codes, mx.array):
            raise ValueError(f"{what} expects an mx.array of codes [B, K, F], got {type(codes).__name__}")
        if codes.ndim != 3 or codes.shape[0] == 0 or codes.shape[2] == 0:
            raise ValueError(f"{what} expects codes shaped [B, K, F], got shape {tuple(codes.shape)}")
        if not mx.issubdtype(codes.dtype, mx.integer):
            raise ValueError(f"{what} expects integer codes, got dtype {codes.dtype}")
        k = codes.shape[1]
        if not self._cfg.quantizer.n_q_semantic <= k <= self.total_codebooks:
            raise ValueError(f"{what}: got {k} codebooks, this Mimi decodes 1 to {self.total_codebooks}")

    @staticmethod
    def _check_batch(state: MimiState, batch: int) -> None:
        have = state.downsample.prev.shape[0]
        if have != batch:
            raise ValueError(
                f"the streaming state was made for batch {have}, got batch {batch}; "
                "make a new state (or call reset()) to change the batch size"
            )
