"""Golden fixtures for PersonaPlex from NVIDIA's reference (github NVIDIA/personaplex, its `moshi/` package).

Run with an environment holding torch 2.13 and the fork installed from a checkout, from the repository root:
    /work/ppenv/bin/python tests/reference/make_personaplex_fixtures.py

Model: a tiny PersonaPlex (`tests/assets/personaplex/lm_config.json`: model_type personaplex, n_q 16, dep_q 16,
the 7B's delays, widths 64 / 32) with random weights made non-degenerate (norms perturbed, attention sharpened)
and rounded to bfloat16; tests/assets/e2e's tiny Mimi (32 bins) and text tokenizer (48 pieces). The sequence is
`offline.py`'s: voice prompt, 0.5 s of silence, the role wrapped in <system> tags one token per frame, 0.5 s of
silence, then the user's audio frame by frame, greedy, float32. Mimi codes of silence and of the 440 Hz sine
(the reference's SILENCE_TOKENS / SINE_TOKENS are the 2048-bin Mimi's) are the tiny Mimi's, recorded here.

Writes under tests/assets/personaplex/:
  lm_config.json            the config (Kyutai schema)
  model.safetensors         the LM in the released PyTorch layout (bf16)
  voice.wav, user.wav       the voice recording and the user's audio (16-bit, 24 kHz)
  voice.pt                  the voice preset the reference saved from voice.wav (save_voice_prompt_embeddings)
  voice_bf16.pt             the same with bf16 embeddings, as the released presets of the bf16 7B hold them
  goldens.safetensors       silence_tokens [8], sine_tokens [8], role_tokens [P] (wrapped role),
                            voice_codes [F, 8], user_codes [S, 8] (the reference Mimi's codes),
                            voice_loudness [1] (pyloudnorm LUFS of voice.wav, float32),
                            tokens_audio [S, 17], tokens_preset [S, 17]: LMGen.step's output per user frame
                            after the prompts (voice from audio / from the preset), -100 while None;
                            tokens_other_role [S, 17]: from the preset, another role (sensitivity).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import sentencepiece
import soundfile as sf
import torch
from moshi.models import lm as plm
from moshi.models.compression import MimiModel
from moshi.models.lm import LMGen, LMModel
from moshi.modules import SEANetDecoder, SEANetEncoder, transformer
from moshi.offline import wrap_with_system_tags
from moshi.quantization import SplitResidualVectorQuantizer
from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parents[2]
E2E = ROOT / "tests" / "assets" / "e2e"
OUT = ROOT / "tests" / "assets" / "personaplex"
SEED = 20260115
RATE = 24_000
ROLE = "You are a wise and friendly teacher."
OTHER_ROLE = "You enjoy having a good conversation."

CONFIG = {
    "model_type": "personaplex",
    "dim": 64,
    "text_card": 48,
    "existing_text_padding_id": 3,
    "n_q": 16,
    "dep_q": 16,
    "card": 32,
    "num_heads": 4,
    "num_layers": 2,
    "hidden_scale": 1.5,
    "causal": True,
    "layer_scale": None,
    "context": 3000,
    "max_period": 10000,
    "gating": "silu",
    "norm": "rms_norm_f32",
    "positional_embedding": "rope",
    "depformer_dim": 32,
    "depformer_dim_feedforward": 48,
    "depformer_num_heads": 2,
    "depformer_num_layers": 1,
    "depformer_causal": True,
    "depformer_layer_scale": None,
    "depformer_multi_linear": True,
    "depformer_context": 16,
    "depformer_max_period": 10000,
    "depformer_gating": "silu",
    "depformer_pos_emb": "none",
    "depformer_weights_per_step": True,
    "delays": [0, 0, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1],
}


def build_lm() -> LMModel:
    kwargs = {k: v for k, v in CONFIG.items() if k != "model_type"}
    return LMModel(device="cpu", dtype=torch.float32, **kwargs).eval()


def randomize(model: torch.nn.Module) -> None:
    gen = torch.Generator().manual_seed(SEED)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn(p.shape, generator=gen) / max(p.shape[-1], 1) ** 0.5)
            if name.endswith(".alpha"):
                p.copy_(1.0 + 0.3 * torch.randn(p.shape, generator=gen))
            elif "self_attn.in_proj_weight" in name:
                p.mul_(1.7)
            elif name.endswith("emb.weight") or ".emb." in name:
                p.mul_(4.0)  # embeddings read one row each: give them the weight of a matmul's output
            p.copy_(p.to(torch.bfloat16).to(torch.float32))


def build_mimi() -> MimiModel:
    cfg = json.loads((E2E / "mimi_config.json").read_text())
    encoder, decoder = SEANetEncoder(**cfg["seanet"]), SEANetDecoder(**cfg["seanet"])
    mimi = MimiModel(
        encoder,
        decoder,
        SplitResidualVectorQuantizer(**cfg["quantizer"]),
        channels=1,
        sample_rate=cfg["sample_rate"],
        frame_rate=cfg["frame_rate"],
        encoder_frame_rate=cfg["sample_rate"] / encoder.hop_length,
        causal=True,
        resample_method="conv",
        encoder_transformer=transformer.ProjectedTransformer(**cfg["transformer"]),
        decoder_transformer=transformer.ProjectedTransformer(**cfg["transformer"]),
    ).eval()
    state = load_file(str(E2E / "tokenizer-e351c8d8-checkpoint125.safetensors"))
    mimi.load_state_dict(state, strict=True)
    mimi.set_num_codebooks(8)
    return mimi


def first_frame_codes(mimi: MimiModel, frame: torch.Tensor) -> torch.Tensor:
    mimi.reset_streaming()
    return mimi.encode(frame)[0, :, 0]


def speechlike(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    f0 = 140 + 60 * rng.random()
    x = sum(np.sin(2 * np.pi * f0 * h * t + rng.random() * 6) / h for h in range(1, 6))
    x = x * (0.5 + 0.5 * np.sin(2 * np.pi * (2 + rng.random()) * t)) + 0.05 * rng.standard_normal(t.size)
    return (0.2 * x / np.abs(x).max()).astype(np.float32)


@torch.no_grad()
def conversation(model, mimi, tokenizer, voice: Path, role: str, user_pcm: np.ndarray, save_preset: bool):
    gen = LMGen(
        model,
        device="cpu",
        use_sampling=False,
        audio_silence_frame_cnt=int(0.5 * 12.5),
        sample_rate=RATE,
        frame_rate=12.5,
        save_voice_prompt_embeddings=save_preset,
    )
    mimi.streaming_forever(1)
    gen.streaming_forever(1)
    if voice.suffix == ".pt":
        gen.load_voice_prompt_embeddings(str(voice))
    else:
        gen.load_voice_prompt(str(voice))
    gen.text_prompt_tokens = tokenizer.encode(wrap_with_system_tags(role))
    mimi.reset_streaming()
    gen.reset_streaming()
    gen.step_system_prompts(mimi)
    mimi.reset_streaming()
    frames = user_pcm.reshape(-1, 1920)
    tokens = torch.full((frames.shape[0], 17), -100, dtype=torch.int32)
    user_codes = []
    for i, frame in enumerate(frames):
        codes = mimi.encode(torch.from_numpy(frame)[None, None])
        user_codes.append(codes[0, :, 0])
        out = gen.step(codes)
        if out is not None:
            tokens[i] = out[0, :, 0].to(torch.int32)
    return tokens, torch.stack(user_codes).to(torch.int32)


def main() -> None:
    torch.manual_seed(SEED)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "lm_config.json").write_text(json.dumps(CONFIG, indent=2) + "\n")
    model = build_lm()
    randomize(model)
    save_file(
        {k: v.to(torch.bfloat16).contiguous() for k, v in model.state_dict().items()}, str(OUT / "model.safetensors")
    )
    check = build_lm()  # the file loads into the reference exactly
    check.load_state_dict({k: v.float() for k, v in load_file(str(OUT / "model.safetensors")).items()}, strict=True)

    mimi = build_mimi()
    mimi.streaming_forever(1)
    frame = torch.zeros(1, 1, 1920)
    t = np.arange(1920) / RATE
    sine = torch.from_numpy((0.5 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32))[None, None]
    silence_tokens, sine_tokens = first_frame_codes(mimi, frame), first_frame_codes(mimi, sine)
    plm.SILENCE_TOKENS = silence_tokens.numpy().astype(np.int64)  # the tiny Mimi's, for the tiny card
    plm.SINE_TOKENS = sine_tokens.numpy().astype(np.int64)

    voice_pcm, user_pcm = speechlike(1.2, 1), speechlike(1.6, 2)
    sf.write(str(OUT / "voice.wav"), voice_pcm, RATE, subtype="PCM_16")
    sf.write(str(OUT / "user.wav"), user_pcm, RATE, subtype="PCM_16")
    user_pcm = sf.read(str(OUT / "user.wav"), dtype="float32")[0]  # as stored (16-bit)
    tokenizer = sentencepiece.SentencePieceProcessor(str(E2E / "tokenizer_spm_32k_3.model"))

    # voice from audio; the reference saves its preset next to the recording (voice.pt)
    tokens_audio, user_codes = conversation(model, mimi, tokenizer, OUT / "voice.wav", ROLE, user_pcm, True)
    tokens_preset, again = conversation(model, mimi, tokenizer, OUT / "voice.pt", ROLE, user_pcm, False)
    preset = torch.load(str(OUT / "voice.pt"))
    torch.save(
        {"embeddings": preset["embeddings"].to(torch.bfloat16), "cache": preset["cache"]}, str(OUT / "voice_bf16.pt")
    )
    tokens_other, _ = conversation(model, mimi, tokenizer, OUT / "voice.pt", OTHER_ROLE, user_pcm, False)
    assert torch.equal(user_codes, again)

    import pyloudnorm

    raw_voice = plm.load_audio(str(OUT / "voice.wav"), RATE)
    loudness = pyloudnorm.Meter(RATE).integrated_loudness(raw_voice[0])
    normalized = plm.normalize_audio(raw_voice, RATE, -24.0)[None, :]
    mimi.reset_streaming()
    voice_codes = torch.stack(
        [c[0, :, 0] for c in plm.encode_from_sphn(mimi, plm._iterate_audio(normalized, 1920, pad=True))]
    ).to(torch.int32)

    goldens = {
        "silence_tokens": silence_tokens.to(torch.int32),
        "sine_tokens": sine_tokens.to(torch.int32),
        "role_tokens": torch.tensor(tokenizer.encode(wrap_with_system_tags(ROLE)), dtype=torch.int32),
        "voice_codes": voice_codes,
        "user_codes": user_codes,
        "voice_loudness": torch.tensor([loudness], dtype=torch.float32),
        "tokens_audio": tokens_audio,
        "tokens_preset": tokens_preset,
        "tokens_other_role": tokens_other,
    }
    save_file({k: v.contiguous() for k, v in goldens.items()}, str(OUT / "goldens.safetensors"))
    shown = tokens_audio[tokens_audio[:, 0] >= 0]
    print("role tokens:", goldens["role_tokens"].tolist())
    print("text tokens (voice from audio):", tokens_audio[:, 0].tolist())
    print("text tokens (voice preset):   ", tokens_preset[:, 0].tolist())
    print("text tokens (other role):     ", tokens_other[:, 0].tolist())
    print("distinct agent codes per codebook:", [len(set(shown[:, k].tolist())) for k in range(1, 9)])
    print(
        "preset == audio:",
        torch.equal(tokens_audio, tokens_preset),
        "; other role differs:",
        not torch.equal(tokens_preset, tokens_other),
    )
    print("voice frames", voice_codes.shape[0], "user frames", user_codes.shape[0])
    for p in sorted(OUT.iterdir()):
        print(f"  {p.name}: {p.stat().st_size} B")
    shutil.rmtree(OUT / "__pycache__", ignore_errors=True)


if __name__ == "__main__":
    main()
