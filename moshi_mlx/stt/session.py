"""SttSession: Mimi's encoder and an STT model, one 80 ms frame of audio in, a text token out.

It is the `FrameModel` the model loop drives for a live transcript (its FrameResult has no audio), and
what `transcribe` runs over a file's frames. Each frame is one lazy graph evaluated with one host sync.
"""

from __future__ import annotations

import os
from typing import Literal, NamedTuple

import mlx.core as mx
import numpy as np
import sentencepiece

from ..audio import MODEL_RATE
from ..audio.files import AudioInput
from ..dialog.events import FrameResult
from ..errors import ConfigError
from ..lm import Lm
from ..loading.hub import ModelFiles
from ..loading.lm import load_lm
from ..loading.memory import KV_AUTO
from ..loading.mimi import load_mimi
from ..mimi import Mimi
from ..text import TextStream
from .feed import FedFrames, file_frames, time_offset
from .stream import Stt
from .turns import TurnEnds, end_of_turn_prob, has_end_of_turn
from .words import TimedWord, timed_words


class SttFrame(NamedTuple):
    token: int
    end_of_turn: float | None  # probability the speaker finished their turn (extra head 2), if the model has it


class Transcript(NamedTuple):
    words: list[TimedWord]
    tokens: list[int]  # one per step fed, the silence prefix and end padding included
    turn_ends: list[float]  # seconds into the audio where the speaker finished a turn (stt/turns.py)


class SttSession:
    """Transcribes audio frame by frame.

    Args:
        mimi: the codec (its encoder gives the model's `n_q` codebooks: 32 for Kyutai's releases).
        lm: a speech-to-text model (`model_type` "stt").
        tokenizer: its sentencepiece model (file or processor).
    """

    def __init__(self, mimi: Mimi, lm: Lm, tokenizer: str | os.PathLike | sentencepiece.SentencePieceProcessor):
        self.stt = Stt(lm)  # refuses a model that is not STT
        cfg = lm.cfg
        if mimi.cardinality != cfg.card:
            raise ConfigError(
                f"the Mimi codec has {mimi.cardinality} entries per codebook but the model expects {cfg.card}: "
                "the Mimi checkpoint and the model do not belong together"
            )
        if mimi.total_codebooks < cfg.n_q:
            raise ConfigError(
                f"the model reads {cfg.n_q} Mimi codebooks but this Mimi holds {mimi.total_codebooks}: "
                "use the Mimi checkpoint of the model's repository"
            )
        mimi.set_num_codebooks(cfg.n_q)
        self.mimi, self.lm, self.cfg = mimi, lm, cfg
        assert cfg.stt is not None
        self.text = TextStream(tokenizer, padding_ids=(0, cfg.existing_text_padding_id))
        self.frame_size = mimi.frame_size
        self.frame_rate = MODEL_RATE / self.frame_size
        # a model with stream delays returns each token `output_lag` steps after it sampled it: timed from then
        self.offset = time_offset(cfg.stt, self.frame_rate) + self.stt.output_lag / self.frame_rate
        self.notes: list[str] = []
        self.reset()

    @classmethod
    def from_files(
        cls, files: ModelFiles, dtype: mx.Dtype | None = None, kv_bits: int | Literal["auto"] | None = KV_AUTO
    ) -> SttSession:
        """Load from local files (on the thread that will run the steps); the memory preflight of `load_lm`."""
        lm = load_lm(files.moshi, config=files.config, dtype=dtype, kv_bits=kv_bits)
        Stt(lm)  # an LM that is not STT is refused before Mimi loads
        mimi = load_mimi(files.mimi, config=files.mimi_config, num_codebooks=lm.cfg.n_q)
        return cls(mimi, lm, files.tokenizer)

    @property
    def has_end_of_turn(self) -> bool:
        return has_end_of_turn(self.cfg)

    def reset(self) -> None:
        self._mimi_state = self.mimi.init_state(1)
        self._state = self.stt.init_state(1)
        self.text.flush()
        self.frames = 0
        self.turns = TurnEnds()

    def flush_word(self) -> str | None:
        return self.text.flush()

    def encode_step(self, pcm: np.ndarray) -> SttFrame:
        """One frame [frame_size] float32 at 24 kHz -> the text token of this step (one host sync)."""
        pcm = np.asarray(pcm, dtype=np.float32)
        if pcm.shape != (self.frame_size,):
            raise ValueError(f"a frame is {self.frame_size} mono samples, got shape {pcm.shape}")
        codes, mimi_state = self.mimi.stream_encode(mx.array(pcm).reshape(1, 1, -1), self._mimi_state)
        out, state = self.stt.advance(self._state, codes[:, :, 0])
        self._mimi_state, self._state = mimi_state, state  # the old states go before evaluation (written in place)
        turn = end_of_turn_prob(out.extra_heads)
        mx.eval(out.text_token, turn, mimi_state, Stt.state_arrays(state))
        self.frames += 1
        return SttFrame(int(out.text_token[0]), None if turn is None else float(turn))

    def step(self, pcm: np.ndarray) -> FrameResult:
        """The model loop's step: no audio out, the transcript's text, and the end of a turn (stt/turns.py)."""
        frame = self.encode_step(pcm)
        turn_end = self.turns.ended(frame.end_of_turn)
        shown, word, starts = self.text.push(frame.token)
        self.turns.heard(bool(shown))
        return FrameResult(None, shown or None, frame.token, word, starts, turn_end=turn_end)

    # -- files ---------------------------------------------------------------------------------------
    def frames_of(self, audio: AudioInput | np.ndarray) -> FedFrames:
        """What the reference feeds for a whole file, frame by frame (silence prefix, audio, end padding)."""
        assert self.cfg.stt is not None
        return file_frames(audio, self.cfg.stt, self.frame_size, self.frame_rate, self.stt.output_lag)

    def transcript(self, tokens: list[int], turn_probs: list[float | None] | None = None) -> Transcript:
        """Words timed as the reference times them, and the ends of turns as said live (stt/turns.py), timed
        as the words are (the model's delay taken off)."""
        words = timed_words(tokens, self.text.sp, self.frame_rate, self.offset, self.cfg.existing_text_padding_id)
        text, ends, turns = TextStream(self.text.sp, tuple(self.text.padding_ids)), TurnEnds(), []
        for step, (token, p) in enumerate(zip(tokens, turn_probs or [None] * len(tokens), strict=True)):
            if ends.ended(p):
                turns.append(max(0.0, step / self.frame_rate - self.offset))
            ends.heard(bool(text.push(token).shown))
        return Transcript(words, tokens, turns)
