"""Golden fixtures for Kyutai's speech-to-text models (`model_type: stt`) from the PyTorch reference.

Run with the reference environment (torch + Kyutai's `moshi` 0.2.13), from the repository root:
    /work/refenv/bin/python tests/reference/make_stt_fixtures.py

Model: the STT architecture shrunk (`CONFIG` below, written as tests/assets/stt/config.json with the file
names of a release): no depformer (dep_q 0), 32 input codebooks, all delays 0, 4 extra heads of size 6
(the 1B's voice-activity heads), `stt_config` with an audio delay of 0.24 s (3 frames) and a silence prefix
of 0.5 s (7 frames, which the reference's timestamp offset truncates to 0 s). Context 16: the 40-step
runs wrap the ring cache. Random weights from a fixed seed made non-degenerate and rounded to bfloat16
(make_lm_fixtures' recipe), so the bf16 file holds exactly the weights the float32 goldens used. The Mimi
is the tiny test Mimi (tests/assets/mimi_tiny.safetensors) with 32 codebooks of 32 entries fitted again
(make_mimi_fixtures' recipe), so its codes are valid inputs of the LM.

Writes under tests/assets/stt/:
  config.json                  Kyutai's STT config schema + file names (as kyutai/stt-1b-en_fr's)
  model.safetensors            the LM in Kyutai's PyTorch release layout (bf16)
  mimi.safetensors, mimi_config.json   the 32-codebook tiny Mimi (PyTorch layout, float32) and its config
  goldens.safetensors          float32 goldens:
    codes [S, 32]                  audio codes fed to LMGen step by step
    text_tokens [S]                LMGen.step_with_extra_heads greedy text token of each step
    text_logits [S, 48]            the text logits of each step
    extra_heads [S, 4, 6]          the extra heads' softmax of each step
    delayed_text_tokens [S]        the same codes through LMGen with per-stream delays DELAYS (text 1, audio
                                   0..3): -1 where LMGen.step returns nothing (its first max(delays) steps)
    delayed_extra_heads [S, 4, 6]  their extra heads (NaN where it returns nothing)
    file_pcm [N]                   a 1.3 s test signal (24 kHz)
    file_codes [F, 32], file_tokens [F], file_heads [F, 4, 6]
                                   the reference's file transcription of it (scripts/stt_from_file_pytorch.py):
                                   silence prefix, the audio padded to whole frames, the delay's silence
  timestamps.json              the reference's word timestamps (tokens_to_timestamped_text) for token
                               sequences and offsets, with the e2e tokenizer (tests/assets/e2e)
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import sys
from pathlib import Path

import sentencepiece
import torch
from moshi.models import loaders
from moshi.models.lm import LMGen
from safetensors.torch import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_lm_fixtures as lmfix  # noqa: E402
import make_mimi_fixtures as mimifix  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
ASSETS = ROOT / "tests" / "assets"
OUT = ASSETS / "stt"
TOKENIZER = ASSETS / "e2e" / "tokenizer_spm_32k_3.model"
SEED = 20250617
STEPS = 40
CARD = 32

CONFIG = {
    "dim": 64,
    "text_card": 48,
    "existing_text_padding_id": 3,
    "n_q": 32,
    "dep_q": 0,
    "card": CARD,
    "num_heads": 4,
    "num_layers": 2,
    "hidden_scale": 1.5,
    "causal": True,
    "layer_scale": None,
    "context": 16,
    "max_period": 100000,
    "gating": "silu",
    "norm": "rms_norm_f32",
    "positional_embedding": "rope",
    "depformer_dim": 32,
    "depformer_num_heads": 2,
    "depformer_num_layers": 1,
    "depformer_multi_linear": True,
    "depformer_pos_emb": "none",
    "depformer_weights_per_step": True,
    "delays": [0] * 33,
    "extra_heads_num_heads": 4,
    "extra_heads_dim": 6,
    "conditioners": {},
    "fuser": None,
    "model_type": "stt",
    "stt_config": {"audio_delay_seconds": 0.24, "audio_silence_prefix_seconds": 0.5},
    "lm_gen_config": {"temp": 0.0, "temp_text": 0.0, "top_k": 250, "top_k_text": 50},
    "mimi_name": "mimi.safetensors",
    "mimi_config_name": "mimi_config.json",
    "tokenizer_name": "tokenizer_spm_32k_3.model",
}
# per-stream delays for the delayed goldens: text 1, the 32 audio codebooks 0, 1, 2, 3, 0, 1, ... (the same weights)
DELAYS = [1] + [k % 4 for k in range(32)]
# keys CheckpointInfo.from_hf_repo pops before building the LM
_NOT_LM = ("moshi_name", "mimi_name", "mimi_config_name", "tokenizer_name", "lora_name", "model_type")
_NOT_LM += ("lm_gen_config", "tts_config", "stt_config", "model_id")


def lm_kwargs() -> dict:
    return {k: v for k, v in CONFIG.items() if k not in _NOT_LM}


def speech_like_text_head(model: torch.nn.Module) -> None:
    """Longer text-head rows for padding (3) and end of padding (0), so that greedy decoding pads most
    steps and marks word boundaries as a trained STT model does: the word timestamps then have words."""
    gen = torch.Generator().manual_seed(SEED + 2)
    with torch.no_grad():
        w = model.text_linear.weight
        for token, scale in ((3, 2.2), (0, 1.8)):
            w[token] = (
                scale
                * w.norm(dim=1).mean()
                * torch.nn.functional.normalize(torch.randn(w.shape[1], generator=gen), dim=0)
            )
        w.copy_(w.to(torch.bfloat16).to(torch.float32))


def build_lm() -> torch.nn.Module:
    torch.manual_seed(SEED)
    model = loaders.get_moshi_lm(None, lm_kwargs=lm_kwargs(), dtype=torch.float32).eval()
    lmfix.randomize(model)
    speech_like_text_head(model)
    assert model.depformer is None and len(model.extra_heads) == 4
    return model


def mimi_config() -> dict:
    cfg = copy.deepcopy(mimifix.TINY_CONFIG)
    cfg["quantizer"].update(n_q=32, bins=CARD)
    return cfg


@torch.no_grad()
def build_mimi():
    """The tiny test Mimi with its quantizer refitted to 32 codebooks of CARD entries."""
    model = loaders.get_mimi(None, mimi_config(), num_codebooks=32).eval()
    state = {k: v for k, v in load_file(str(ASSETS / "mimi_tiny.safetensors")).items() if "._codebook." not in k}
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and all("._codebook." in k for k in missing), (missing, unexpected)
    gen = torch.Generator().manual_seed(SEED)
    calib = mimifix.signal(gen, 8, 1920 * 12)
    latent = model._encode_to_unquantized_latent(calib)
    mimifix.fit_codebooks(model, latent, gen)
    return model


@torch.no_grad()
def run_codes(model, codes: torch.Tensor) -> dict[str, torch.Tensor]:
    """LMGen with the STT settings (greedy, as Kyutai's scripts) over codes [S, 32]."""
    logits: list[torch.Tensor] = []
    gen = LMGen(model, temp=0, temp_text=0.0, on_text_logits_hook=lambda x: logits.append(x[0, 0, 0].clone()))
    tokens, heads = [], []
    with gen.streaming(1):
        for frame in codes:
            out = gen.step_with_extra_heads(frame[None, :, None])
            assert out is not None  # delays 0: a token at every step
            tokens.append(int(out[0][0, 0, 0]))
            heads.append(torch.stack([h[0, 0] for h in out[1]]))
    return {
        "text_tokens": torch.tensor(tokens, dtype=torch.int32),
        "text_logits": torch.stack(logits).float(),
        "extra_heads": torch.stack(heads).float(),
    }


@torch.no_grad()
def run_delayed(model, codes: torch.Tensor) -> dict[str, torch.Tensor]:
    """LMGen over codes [S, 32] with the model's delays set to DELAYS (LMGen reads them from the model)."""
    saved, model.delays = model.delays, list(DELAYS)
    try:
        gen = LMGen(model, temp=0, temp_text=0.0)
        tokens, heads = [], []
        with gen.streaming(1):
            for frame in codes:
                out = gen.step_with_extra_heads(frame[None, :, None])
                if out is None:  # the first max(DELAYS) steps
                    tokens.append(-1)
                    heads.append(torch.full((4, 6), float("nan")))
                    continue
                tokens.append(int(out[0][0, 0, 0]))
                heads.append(torch.stack([h[0, 0] for h in out[1]]))
    finally:
        model.delays = saved
    return {"delayed_text_tokens": torch.tensor(tokens, dtype=torch.int32), "delayed_extra_heads": torch.stack(heads)}


@torch.no_grad()
def transcribe_file(model, mimi, audio: torch.Tensor) -> tuple[dict[str, torch.Tensor], float]:
    """scripts/stt_from_file_pytorch.py's feeding (moshi 0.2.11+): silence prefix chunks, the audio padded
    to whole frames, ceil(delay * frame_rate) silence chunks; returns the goldens and its time offset."""
    stt = CONFIG["stt_config"]
    audio = audio[None]  # [1, N]
    if audio.shape[-1] % mimi.frame_size != 0:
        audio = torch.nn.functional.pad(audio, (0, mimi.frame_size - audio.shape[-1] % mimi.frame_size))
    n_prefix = math.ceil(stt["audio_silence_prefix_seconds"] * mimi.frame_rate)
    n_suffix = math.ceil(stt["audio_delay_seconds"] * mimi.frame_rate)
    silence = torch.zeros((1, 1, mimi.frame_size))
    chunks = itertools.chain(
        itertools.repeat(silence, n_prefix),
        torch.split(audio[:, None], mimi.frame_size, dim=-1),
        itertools.repeat(silence, n_suffix),
    )
    gen = LMGen(model, temp=0, temp_text=0.0)
    codes, tokens, heads = [], [], []
    with mimi.streaming(1), gen.streaming(1):
        for chunk in chunks:
            c = mimi.encode(chunk)
            out = gen.step_with_extra_heads(c)
            assert out is not None
            codes.append(c[0, :, 0])
            tokens.append(int(out[0][0, 0, 0]))
            heads.append(torch.stack([h[0, 0] for h in out[1]]))
    offset = int(n_prefix / mimi.frame_rate) + stt["audio_delay_seconds"]  # as the script computes it
    goldens = {
        "file_codes": torch.stack(codes).to(torch.int32),
        "file_tokens": torch.tensor(tokens, dtype=torch.int32),
        "file_heads": torch.stack(heads).float(),
    }
    return goldens, offset


def tokens_to_timestamped_text(text_tokens, tokenizer, frame_rate, end_of_padding_id, padding_token_id, offset_seconds):
    """Kyutai's word timestamps, as in delayed-streams-modeling scripts/stt_from_file_pytorch.py (the
    reference for them: the moshi package has none); returns [(word, start, end)]."""
    text_tokens = text_tokens.cpu().view(-1)
    sequence_timestamps = []

    def _tstmp(start_position, end_position):
        return (
            max(0, start_position / frame_rate - offset_seconds),
            max(0, end_position / frame_rate - offset_seconds),
        )

    def _decode(t):
        t = t[t > padding_token_id]
        return tokenizer.decode(t.numpy().tolist())

    def _decode_segment(start, end):
        text = _decode(text_tokens[start:end])
        words_inside_segment = text.split()
        if len(words_inside_segment) == 0:
            return
        if len(words_inside_segment) == 1:
            sequence_timestamps.append((text, *_tstmp(start, end)))
        else:
            for adjacent_word in words_inside_segment[:-1]:
                n_tokens = len(tokenizer.encode(adjacent_word))
                sequence_timestamps.append((adjacent_word, *_tstmp(start, start + n_tokens)))
                start += n_tokens
            adjacent_word = words_inside_segment[-1]
            sequence_timestamps.append((adjacent_word, *_tstmp(start, end)))

    (segment_boundaries,) = torch.where(text_tokens == end_of_padding_id)
    if not segment_boundaries.numel():
        return []
    for i in range(len(segment_boundaries) - 1):
        _decode_segment(int(segment_boundaries[i]) + 1, int(segment_boundaries[i + 1]))
    last_segment_start = segment_boundaries[-1] + 1
    boundary_token = torch.tensor([tokenizer.eos_id()])
    (end_of_last_segment,) = torch.where(torch.isin(text_tokens[last_segment_start:], boundary_token))
    if not end_of_last_segment.numel():
        last_segment_end = min(text_tokens.shape[-1], last_segment_start + frame_rate)
    else:
        last_segment_end = last_segment_start + end_of_last_segment[0]
    _decode_segment(int(last_segment_start), int(last_segment_end))
    return sequence_timestamps


def timestamp_cases(sp, file_tokens: torch.Tensor, file_offset: float) -> list[dict]:
    """Token sequences covering every branch: one word per segment, several words in a segment (timed by
    their token counts), a last segment closed by EOS (2), one cut at 1 s or at the end, times clamped at 0."""
    p = {sp.IdToPiece(i): i for i in range(sp.GetPieceSize())}
    sequences = [
        [3, 3, 0, p["▁the"], 3, 3, 0, p["▁time"], 3, 3, 0, p["▁do"], p["out"], 3, 3, 0, p["▁are"], 3, 2, 3, 3],
        [0, p["▁a"], p["▁i"], p["n"], 3, 0, p["▁wh"], p["at"], p["▁time"], 3, 3, 0] + [p["▁ca"], p["t"]] + [3] * 16,
        [3] * 5 + [0, p["▁s"], p["ea"]] + [3] * 4,
        [p["▁the"], 3, 3],  # no boundary: no words
    ]
    cases = [{"tokens": s, "offset": o} for s in sequences for o in (0.0, 0.5, 2.74)]
    cases.append({"tokens": file_tokens.tolist(), "offset": file_offset})
    for case in cases:
        words = tokens_to_timestamped_text(torch.tensor(case["tokens"]), sp, 12.5, 0, 3, case["offset"])
        case["words"] = [[w, float(a), float(b)] for w, a, b in words]
    return cases


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    model = build_lm()
    layout = lmfix.torch_release_layout(model, 0)
    assert not any(k.startswith("depformer") for k in layout), sorted(layout)
    save_file(layout, str(OUT / "model.safetensors"), metadata={"format": "pt"})
    check = loaders.get_moshi_lm(str(OUT / "model.safetensors"), lm_kwargs=lm_kwargs(), dtype=torch.float32)
    for (name, a), (_, b) in zip(model.state_dict().items(), check.state_dict().items()):
        assert torch.equal(a, b), name  # the file loads into the reference exactly
    (OUT / "config.json").write_text(json.dumps(CONFIG, indent=2) + "\n")

    mimi = build_mimi()
    save_file(mimifix.released_layout(mimi.state_dict()), str(OUT / "mimi.safetensors"))
    (OUT / "mimi_config.json").write_text(json.dumps(mimi_config(), indent=2) + "\n")

    gen = torch.Generator().manual_seed(SEED + 1)
    codes = torch.randint(0, CARD, (STEPS, 32), generator=gen)
    goldens = {"codes": codes.to(torch.int32), **run_codes(model, codes), **run_delayed(model, codes)}
    delayed = goldens["delayed_text_tokens"]
    assert (delayed[:3] == -1).all() and not torch.equal(delayed[3:], goldens["text_tokens"][1:-2])
    print("delayed text tokens:", delayed.tolist())
    pcm = mimifix.signal(gen, 1, int(24000 * 1.3))[0, 0]
    file_goldens, offset = transcribe_file(model, mimi, pcm)
    goldens |= {"file_pcm": pcm, **file_goldens}

    # Sensitivity: the tokens must vary and depend on the inputs and on every codebook.
    tok = goldens["text_tokens"]
    changed = codes.clone()
    changed[5, 31] = (changed[5, 31] + 1) % CARD
    alt = run_codes(model, changed)["text_logits"]
    assert torch.equal(alt[:5], goldens["text_logits"][:5]) and not torch.allclose(alt[5], goldens["text_logits"][5])
    print("text tokens:", tok.tolist(), f"({len(set(tok.tolist()))} distinct)")
    print("file tokens:", goldens["file_tokens"].tolist())
    print("distinct file codes per codebook:", [len(set(goldens["file_codes"][:, k].tolist())) for k in range(32)])
    print(f"min relative top-2 text gap: {lmfix.min_relative_gap(goldens['text_logits']):.2e}")
    save_file(
        {k: v.contiguous() for k, v in goldens.items()},
        str(OUT / "goldens.safetensors"),
        metadata={"reference": "moshi 0.2.13", "seed": str(SEED), "file_offset_seconds": str(offset)},
    )

    sp = sentencepiece.SentencePieceProcessor(str(TOKENIZER))  # type: ignore[call-arg]
    cases = timestamp_cases(sp, goldens["file_tokens"], offset)
    (OUT / "timestamps.json").write_text(json.dumps(cases, indent=1) + "\n")
    for case in cases:
        print(case["offset"], case["words"])
    for p in sorted(OUT.iterdir()):
        print(f"{p.name}: {p.stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
