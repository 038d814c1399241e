"""MoshiPipeline: one 80 ms frame of a conversation, Mimi encode -> LM step -> Mimi decode.

This is the real `FrameModel` that `ModelLoop` drives (live dialog, file mode, the app). It holds the
weights and the explicit streaming states; `reset()` starts a new conversation without reloading.
Each frame is built lazily and evaluated with one host sync.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import mlx.core as mx
import numpy as np

from .audio import FRAME
from .config import LmConfig
from .dialog.events import FrameResult
from .errors import ConfigError
from .lm import Lm
from .lm_gen import LmGen
from .loading.hub import ModelFiles
from .loading.lm import load_lm
from .loading.memory import KV_AUTO, keep_resident
from .loading.mimi import load_mimi, mimi_config
from .mimi import Mimi, MimiState
from .sampling import SEED_RANGE, TEMP_RANGE, TOP_K_RANGE
from .stt.speed import TranscriptCost, time_frames
from .stt.user import UserTranscriber
from .text import TextStream
from .weights.tree import flatten


@dataclass(frozen=True)
class Sampling:
    """Sampling settings of a conversation (the reference's defaults; temperature 0 is greedy)."""

    temp: float = 0.8
    text_temp: float = 0.7
    top_k: int = 250
    text_top_k: int = 25
    seed: int | None = None

    def __post_init__(self) -> None:
        for name, value, (lo, hi) in (
            ("temp", self.temp, TEMP_RANGE),
            ("text_temp", self.text_temp, TEMP_RANGE),
            ("top_k", self.top_k, TOP_K_RANGE),
            ("text_top_k", self.text_top_k, TOP_K_RANGE),
            ("seed", SEED_RANGE[0] if self.seed is None else self.seed, SEED_RANGE),
        ):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and lo <= value <= hi):
                raise ConfigError(f"sampling {name} {value!r} is out of range: use {lo:g} to {hi}")


def check_configs(files: ModelFiles) -> LmConfig:
    """Read and check the LM and Mimi configs of `files` (ConfigError naming the bad value), before any
    weights load: an absurd value would otherwise surface minutes later, or crash the model's build."""
    cfg = LmConfig.preset() if files.config is None else LmConfig.from_json(files.config)
    check_dialog_model(cfg, str(files.config))
    mimi_config(files.mimi_config)
    return cfg


def check_dialog_model(cfg: LmConfig, source: str = "the model") -> None:
    """ConfigError unless `cfg` is a dialogue model (a speech-to-text model cannot answer)."""
    if cfg.is_stt:
        raise ConfigError(
            f"{source}: this is a speech-to-text model (model_type 'stt'), which transcribes but cannot answer; "
            "transcribe with `python -m moshi_mlx.transcribe`, or pick a Moshi model for the dialogue."
        )


class MoshiPipeline:
    """Mimi + LM + text stream, stepping one frame at a time.

    Args:
        mimi: the codec (its encoder reads the user, its decoder speaks Moshi's codes).
        lm: the language model.
        text: detokenizer for Moshi's text stream.
        sampling: sampling settings.
        user: transcribes the user too, from the same Mimi codes (stt/user.py), when given.
    """

    def __init__(
        self,
        mimi: Mimi,
        lm: Lm,
        text: TextStream,
        sampling: Sampling = Sampling(),
        user: UserTranscriber | None = None,
        prompt=None,
    ):
        cfg = lm.cfg
        check_dialog_model(cfg)
        if mimi.cardinality != cfg.card:
            raise ConfigError(
                f"the Mimi codec has {mimi.cardinality} entries per codebook but the LM expects {cfg.card}: "
                "the Mimi checkpoint and the LM do not belong together"
            )
        needed = max(cfg.dep_q, cfg.user_codebooks)
        if mimi.num_codebooks < needed:
            mimi.set_num_codebooks(needed)
        if user is not None:
            user.check_mimi(mimi)  # 32 codebooks: Moshi reads the first 8, the STT model all of them
        self.user = user
        self.user_lag_s = 0.0 if user is None else user.lag_s  # read by the model loop to time the user's words
        self.mimi, self.lm, self.text, self.sampling = mimi, lm, text, sampling
        self.prompt = prompt  # PersonaPlex: the voice and role fed before each conversation (persona.prompt)
        self.gen = LmGen(
            self._generating(lm),
            temp=sampling.temp,
            text_temp=sampling.text_temp,
            top_k=sampling.top_k,
            text_top_k=sampling.text_top_k,
            seed=sampling.seed,
        )
        self.notes: list[str] = []  # what a person should know about how the model was set up
        self.alerts: list[str] = []  # what a person must be told (the app opens a dialog): a feature turned off
        self.frame_size = mimi.frame_size
        if self.frame_size != FRAME:
            raise ConfigError(f"Mimi frames of {self.frame_size} samples are not supported (expected {FRAME})")
        self._trace_steps()
        self.reset()

    @classmethod
    def from_files(
        cls,
        files: ModelFiles,
        sampling: Sampling = Sampling(),
        dtype: mx.Dtype | None = None,
        kv_bits: int | Literal["auto"] | None = KV_AUTO,
        user_files: ModelFiles | None = None,
        persona=None,
        live: bool = False,
        **extra,
    ) -> MoshiPipeline:
        """Load everything from local files (call on the thread that will run the steps).

        kv_bits: as `load_lm`; by default the LM's attention cache is stored at 8 bits only where the
        unquantized one would not fit in memory (a note then says so).
        user_files: an STT model's files (its LM and tokenizer) to transcribe the user live.
        live: a live dialog: the user's transcript is timed on this machine and kept only where it keeps up
            (`check_user_speed`); file mode runs at any speed.
        persona: a PersonaPlex model's (voice, role) (`persona.resolve_persona`), fed before each conversation.
        `extra`: a subclass's arguments.
        """
        mimi = load_mimi(files.mimi, config=files.mimi_config)
        # a config path: the quantization it records is checked against the file
        lm = load_lm(files.moshi, config=files.config, dtype=dtype, kv_bits=kv_bits)
        text = TextStream(files.tokenizer, padding_ids=(0, lm.cfg.existing_text_padding_id))
        if user_files is not None:
            extra["user"] = UserTranscriber.from_files(user_files)
        if persona is not None:
            from .persona.prompt import build_prompt

            extra["prompt"] = build_prompt(mimi, lm.cfg, files.tokenizer, *persona)
        pipe = cls(mimi, lm, text, sampling, **extra)
        models = [mimi.parameters(), lm.parameters()] + ([] if pipe.user is None else [pipe.user.stt.lm.parameters()])
        resident = keep_resident(sum(x.nbytes for _, x in flatten(models)))
        if resident:
            pipe.notes.append(resident)
        if kv_bits == KV_AUTO and lm.kv_bits is not None:
            pipe.notes.append(
                f"Memory is tight: the attention cache is stored at {lm.kv_bits} bits "
                "(about half its size, ~1% error in attention scores)"
            )
        if live and pipe.user is not None:
            pipe.check_user_speed()
        return pipe

    def _trace_steps(self) -> None:
        """Trace the compiled frame (Mimi's encode and decode, the LM's step for every attention window)
        while loading, not in the conversation's first frames; nothing is evaluated."""
        self.gen.prepare(1)
        if self.user is not None:
            self.user.stt.prepare(1)
        codes, state = self.mimi.stream_encode(mx.zeros((1, 1, self.frame_size)), self.mimi.init_state(1))
        self.mimi.stream_decode(codes[:, : self.lm.cfg.dep_q], state)

    def check_user_speed(self, budget_ms: float | None = None) -> TranscriptCost | None:
        """Times real frames with and without the user's transcript on this machine (stt/speed.py) and keeps
        it only where the frame stays within the live step budget (`dialog.pacing.step_budget_ms`): a note says
        its cost, or an alert why the dialog goes on without it. Starts the conversation afresh afterwards."""
        from .dialog.pacing import step_budget_ms

        user = self.user
        if user is None:
            return None
        budget = step_budget_ms() if budget_ms is None else budget_ms
        silence = np.zeros(self.frame_size, np.float32)
        moshi_codebooks, all_codebooks = max(self.lm.cfg.dep_q, self.lm.cfg.user_codebooks), self.mimi.num_codebooks

        def alone() -> None:  # Moshi as it runs without the transcript: Mimi encodes only Moshi's codebooks
            self.user = None
            self.mimi.set_num_codebooks(moshi_codebooks)
            try:
                self.step(silence)
            finally:
                self.user = user
                self.mimi.set_num_codebooks(all_codebooks)

        cost = time_frames(alone, lambda: self.step(silence), budget)
        if cost.fits:
            self.notes.append(cost.note())
        else:
            self.alerts.append(cost.refusal())
            self.user, self.user_lag_s = None, 0.0  # its weights go with it
            self.mimi.set_num_codebooks(moshi_codebooks)
        self.reset()
        return cost

    def reset(self) -> None:
        """A new conversation: fresh codec and LM states and text stream, same weights."""
        self._mimi_state = self.mimi.init_state(1)
        self._gen_state = self.gen.init_state(1)
        if self.prompt is not None:  # its one output frame is all prompt (silence): not played
            from .persona.prompt import run_prompt

            self._gen_state, _ = run_prompt(self.gen, self._gen_state, self.prompt)
        self.text.flush()
        if self.user is not None:
            self.user.reset()
        self.frames = 0

    def flush_word(self) -> str | None:
        """The word being spelled (the last of a turn), before a reset or at the end of a session."""
        return self.text.flush()

    def flush_user_word(self) -> str | None:
        """The same for the user's transcript."""
        return None if self.user is None else self.user.flush_word()

    def step(self, pcm: np.ndarray) -> FrameResult:
        """One frame of the user's audio [1920] float32 at 24 kHz -> Moshi's answer for this step."""
        pcm = np.asarray(pcm, dtype=np.float32)
        if pcm.shape != (self.frame_size,):
            raise ValueError(f"a frame is {self.frame_size} mono samples, got shape {pcm.shape}")
        codes, state = self._user_codes(pcm)
        out = self._advance(codes[:, : self.lm.cfg.user_codebooks])
        heard, heard_arrays = (None, []) if self.user is None else self.user.advance(codes)
        self.frames += 1
        # the old states are let go before the one evaluation, so that their buffers are written in place
        if out is None:  # the acoustic delays are still filling
            self._mimi_state = state
            mx.eval(state, self.gen.state_arrays(self._gen_state), heard_arrays)
            return self._with_user(FrameResult(None), heard)
        audio, self._mimi_state = self.mimi.stream_decode(out[:, 1 : 1 + self.lm.cfg.dep_q, None], state)
        del state
        mx.eval(out, audio, self._mimi_state, self.gen.state_arrays(self._gen_state), heard_arrays)
        token = int(np.array(out)[0, 0])
        shown, word, starts = self.text.push(token)
        return self._with_user(FrameResult(np.array(audio).reshape(-1), shown or None, token, word, starts), heard)

    def _with_user(self, result: FrameResult, heard: list[mx.array] | None) -> FrameResult:
        """The user's transcript of this frame (`heard`: the STT outputs, already evaluated) added to `result`."""
        if heard is None or self.user is None:
            return result
        (shown, word, starts), turn_end, last = self.user.push(heard)
        return result._replace(
            user_text=shown or None, user_word=last or word, user_word_start=starts, user_turn_end=turn_end
        )

    def _generating(self, lm: Lm) -> Lm:
        """The model LmGen steps (a subclass may wrap it, e.g. with guidance)."""
        return lm

    def _user_codes(self, pcm: np.ndarray) -> tuple[mx.array, MimiState]:
        """The user's codes [1, >= user_codebooks] of this frame (every codebook Mimi encodes: 32 when the user
        is transcribed too), and the codec state after encoding it."""
        codes, state = self.mimi.stream_encode(mx.array(pcm).reshape(1, 1, -1), self._mimi_state)
        return codes[:, :, 0], state

    def _advance(self, user: mx.array) -> mx.array | None:
        """One LM step (lazy): the output frame [1, 1 + dep_q], None while the delays fill."""
        _, out, self._gen_state = self.gen.advance(self._gen_state, user)
        return out
