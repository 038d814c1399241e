"""PersonaPlex's prompt phase: the voice, 0.5 s of silence, the role one token per frame, 0.5 s of silence.

NVIDIA's reference (`LMGen.step_system_prompts`) feeds these as generation steps whose every token is given:
Moshi's text stream reads the padding token 3 (the role's tokens during the role), Moshi's audio the voice's
Mimi codes (then the codes of silence), the user's stream the codes of a 440 Hz sine. With every token given,
sampling changes nothing, so the phase is teacher forcing: the temporal transformer reads the token frames the
reference's ring holds (its initial tokens where a stream's delay is not yet filled), in chunks, and the
generator then continues from the ring as the reference leaves it. A voice preset replaces the voice's token
frames by the input embeddings it saved and the ring by its saved one.

Two things of the reference's stepping are kept: its step at call c runs the model on the frame of call c - 1
(ours on the frame of the same step, so the phase ends with one step of ours that reads the last prompt frame),
and Moshi's acoustic codebooks (delay 1) of the first frame after the prompt are still the silence's (they
were given one call earlier): that step's sampled values are replaced by them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import mlx.core as mx
import numpy as np

from ..config import LmConfig
from ..errors import ConfigError, Setting
from ..lm import LmState
from ..lm_gen import LmGen, LmGenState
from .voices import VoicePrompt

# The reference's Mimi codes (2048 bins) of a silent frame and of a 440 Hz sine frame (lm.py).
SILENCE_TOKENS = (948, 243, 1178, 546, 1736, 1030, 1978, 2008)
SINE_TOKENS = (430, 1268, 381, 1611, 1095, 1495, 56, 472)
PROMPT_TEXT_TOKEN = 3  # the reference's zero_text_code: Moshi's text during the voice and the silences
SILENCE_FRAMES = 6  # int(0.5 s * 12.5 Hz): the spacer after the voice and after the role
_CHUNK = 64  # temporal steps per forward pass of the prompt


def wrap_role(text: str) -> str:
    """The role as the model was trained on it: inside <system> tags (the reference's wrap_with_system_tags)."""
    cleaned = text.strip()
    if cleaned.startswith("<system>") and cleaned.endswith("<system>"):
        return cleaned
    return f"<system> {cleaned} <system>"


@dataclass(frozen=True)
class Prompt:
    """What the phase feeds. `voice_codes` [F, 8]: Mimi's codes of a voice from audio (None for a preset)."""

    voice: VoicePrompt | None
    role_tokens: Sequence[int]
    voice_codes: np.ndarray | None = None
    silence: Sequence[int] = SILENCE_TOKENS  # the Mimi codes of silence and of the sine, for this model's Mimi
    sine: Sequence[int] = SINE_TOKENS
    silence_frames: int = SILENCE_FRAMES
    extra: dict = field(default_factory=dict)


def check_prompt(cfg: LmConfig, prompt: Prompt) -> None:
    """ConfigError if the prompt cannot belong to this model (a preset of another model, codes past the card)."""
    n = cfg.dep_q
    for name, codes in (("silence", prompt.silence), ("sine", prompt.sine)):
        if len(codes) != n or not all(0 <= int(c) < cfg.card for c in codes):
            raise ConfigError(f"the {name} codes must be {n} codes below {cfg.card}: this Mimi and LM do not match")
    if any(not 0 <= int(t) <= cfg.text_card for t in prompt.role_tokens):
        raise ConfigError("the role's tokens are not in this model's text vocabulary: wrong tokenizer")
    v = prompt.voice
    if v is not None and v.embeddings is not None:
        if v.embeddings.shape[1] != cfg.dim:
            raise ConfigError(
                f"voice {v.name!r} was made for a model of width {v.embeddings.shape[1]}, not {cfg.dim}: "
                "use a voice of this model's release"
            )
        if v.cache is None or v.cache.shape != (cfg.num_codebooks, cfg.max_delay + 3):
            raise ConfigError(f"voice {v.name!r}: its token ring does not fit this model ({cfg.num_codebooks} streams)")
    if v is not None and v.embeddings is None and prompt.voice_codes is None:
        raise ConfigError(f"voice {v.name!r} from audio needs its Mimi codes")
    calls, voice_calls = _frames(cfg, prompt)
    frames, context = voice_calls + len(calls), cfg.transformer.context or 0
    if context and frames > context:  # its start, the voice, would leave the window before the conversation
        raise ConfigError(
            f"the voice and role take {frames} frames ({len(prompt.role_tokens)} of them the role's tokens), more "
            f"than the {context} frames the model attends to: give a shorter role or voice recording",
            hint=Setting.PERSONA,
        )


def _frames(cfg: LmConfig, prompt: Prompt) -> tuple[list[tuple[int, Sequence[int]]], int]:
    """(text token, Moshi's codes) of each call of the reference after the voice's own calls, and how many
    calls the voice takes (its frames, or its replayed embeddings + 1)."""
    calls: list[tuple[int, Sequence[int]]] = []
    v = prompt.voice
    if v is not None and v.embeddings is not None:
        voice_calls = v.embeddings.shape[0] + 1
    else:
        codes = [] if v is None else np.asarray(prompt.voice_codes)[:, : cfg.dep_q].tolist()
        calls += [(PROMPT_TEXT_TOKEN, c) for c in codes]
        voice_calls = 0
    silence = [(PROMPT_TEXT_TOKEN, prompt.silence)] * prompt.silence_frames
    calls += silence + [(int(t), prompt.silence) for t in prompt.role_tokens] + silence
    return calls, voice_calls


def run_prompt(gen: LmGen, state: LmGenState, prompt: Prompt) -> tuple[LmGenState, mx.array]:
    """Feed the prompt into a fresh generator state; the state to continue the conversation from.

    Returns:
        (state, output frame [B, 1 + dep_q]): the frame is the reference's first output after the prompt (all
        of it given by the prompt); the conversation's first user frame goes to the next step.
    """
    cfg, lm = gen.cfg, gen.lm
    if state.step != 0:
        raise ValueError("the prompt goes first: pass a fresh state")
    check_prompt(cfg, prompt)
    calls, first = _frames(cfg, prompt)
    total = first + len(calls)  # calls of the reference; positions 0..total hold its tokens
    batch = state.tokens.shape[0]
    ring = np.full((cfg.num_codebooks, total + 2), -2, np.int64)  # the reference's token cache, unwrapped
    v = prompt.voice
    if first:  # a preset: the ring as saved after its last call
        assert v is not None and v.cache is not None
        width = v.cache.shape[1]
        for p in (first - 1, first):
            ring[:, p] = v.cache[:, p % width]
    user = [*prompt.sine, *prompt.sine][: cfg.user_codebooks]
    for c, (text, moshi) in enumerate(calls, start=first):
        ring[0, c + cfg.delays[0]] = text
        for k in range(cfg.dep_q):
            ring[1 + k, c + cfg.delays[1 + k]] = moshi[k]
        for k in range(cfg.user_codebooks):
            row = 1 + cfg.dep_q + k
            ring[row, c + cfg.delays[row]] = user[k]
    initial = [cfg.text_initial_token_id] + [cfg.initial_token_id] * cfg.n_q
    for k, d in enumerate(cfg.delays):
        ring[k, : d + 1] = initial[k]

    lm_state = state.lm
    if first:
        emb = mx.array(v.embeddings)[None].astype(lm.compute_dtype)  # type: ignore[union-attr]
        for i in range(0, emb.shape[1], _CHUNK):
            _, temporal = lm.transformer.step(emb[:, i : i + _CHUNK], lm_state.temporal)
            lm_state = LmState(temporal)
            mx.eval(lm_state.arrays())
    start = max(first - 1, 0)
    tokens = mx.broadcast_to(mx.array(ring, mx.int32)[None], (batch, *ring.shape))
    for i in range(start, total - 1, _CHUNK):
        _, _, lm_state = lm.step_text(tokens[:, :, i : min(i + _CHUNK, total - 1)], lm_state)
        mx.eval(lm_state.arrays())

    # our ring holds the reference's positions total - 1 (this step's input) and total (delayed streams)
    size = state.tokens.shape[2]
    slots = np.full((cfg.num_codebooks, size), -2, np.int64)
    for p in (total - 1, total):
        slots[:, p % size] = ring[:, p]
    state = LmGenState(
        lm_state, mx.broadcast_to(mx.array(slots, mx.int32)[None], state.tokens.shape), total - 1, state.key
    )
    user_frame = tokens[:, 1 + cfg.dep_q :, total - 1]  # the last prompt frame's user codes (the sine)
    _, out, state = gen.advance(state, user_frame)
    # Moshi's delayed codebooks of the next frame were given by the last prompt call (the silence's)
    delayed = [1 + k for k in range(cfg.dep_q) if cfg.delays[1 + k] > 0]
    given = np.full(cfg.num_codebooks, -1, np.int64)
    given[delayed] = ring[delayed, total]
    replace = np.zeros((cfg.num_codebooks, size), bool)
    replace[delayed, total % size] = True
    tokens = mx.where(mx.array(replace)[None], mx.array(given, mx.int32)[None, :, None], state.tokens)
    state = state._replace(tokens=tokens)
    assert out is not None  # the prompt is longer than the delays
    head = given[: out.shape[1]]
    out = mx.where(mx.array((head >= 0).tolist())[None], mx.array(head, mx.int32)[None], out)
    mx.eval(out, gen.state_arrays(state))
    return state, out


def encode_frames(mimi, pcm: np.ndarray, codebooks: int) -> np.ndarray:
    """Mimi's codes [F, codebooks] of `pcm` [T] (24 kHz), frame by frame from a fresh state, the last frame
    padded with zeros (the reference's `_iterate_audio(pad=True)`)."""
    frame = mimi.frame_size
    padded = np.zeros(-(-len(pcm) // frame) * frame, np.float32)
    padded[: len(pcm)] = pcm
    state, codes = mimi.init_state(1), []
    for i in range(0, len(padded), frame):
        c, state = mimi.stream_encode(mx.array(padded[i : i + frame]).reshape(1, 1, -1), state)
        codes.append(c[0, :codebooks, 0])
    out = mx.stack(codes)
    mx.eval(out)
    return np.array(out)


def prompt_codes(mimi) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(silence, sine) codes for a Mimi other than the released one (the reference's constants are that
    Mimi's): the first frame of silence and of a 440 Hz sine at amplitude 0.5, each from a fresh state."""
    t = np.arange(mimi.frame_size) / mimi.sample_rate
    sine = (0.5 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    n = 8
    silence = encode_frames(mimi, np.zeros(mimi.frame_size, np.float32), n)[0]
    return tuple(int(c) for c in silence), tuple(int(c) for c in encode_frames(mimi, sine, n)[0])


def role_tokens(tokenizer_path, role: str) -> list[int]:
    """The role's text tokens, wrapped in <system> tags, as the reference tokenizes them."""
    import sentencepiece

    return list(sentencepiece.SentencePieceProcessor(str(tokenizer_path)).encode(wrap_role(role)))


RELEASED_CARD = 2048  # the released Mimi's codebook size: SILENCE_TOKENS / SINE_TOKENS are its codes


def build_prompt(mimi, cfg: LmConfig, tokenizer_path, voice: VoicePrompt | None, role: str) -> Prompt:
    """The prompt of a conversation: the voice's codes encoded once by `mimi`, the role tokenized; the codes of
    silence and of the sine the reference's for the released codec, else this codec's own (tiny test models)."""
    silence, sine = (SILENCE_TOKENS, SINE_TOKENS) if cfg.card == RELEASED_CARD else prompt_codes(mimi)
    role_ids = role_tokens(tokenizer_path, role) if role.strip() else []
    if voice is not None and voice.audio is not None:  # its length checked first: encoding a long one takes minutes
        frames = -(-len(voice.audio) // mimi.frame_size)
        check_prompt(cfg, Prompt(voice, role_ids, np.zeros((frames, cfg.dep_q), np.int64), silence, sine))
    codes = None if voice is None or voice.audio is None else encode_frames(mimi, voice.audio, cfg.dep_q)
    prompt = Prompt(voice, role_ids, codes, silence, sine)
    check_prompt(cfg, prompt)
    return prompt
