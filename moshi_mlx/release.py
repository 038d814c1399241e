"""Kyutai's and NVIDIA's release facts: repositories, file names, voices, precisions, group sizes. The only copy.

Kyutai publishes Moshi for MLX as one Hugging Face repository per voice and precision
(`kyutai/moshiko-mlx-q4`, `kyutai/moshika-mlx-bf16`, ...), each holding:
    model.q4.safetensors | model.q8.safetensors | model.safetensors   the LM, one per precision
    tokenizer-e351c8d8-checkpoint125.safetensors                      Mimi
    tokenizer_spm_32k_3.model                                        the text tokenizer
    config.json                                                      optional LM config
and the PyTorch weights our quantizer converts as `kyutai/moshiko-pytorch-bf16`. The rest of the family
(FAMILY_REPOS) holds the same files in the PyTorch layout; PersonaPlex's add `voices.tgz` (voice presets).
"""

from __future__ import annotations

VOICES = {"moshiko": "male voice", "moshika": "female voice"}
DEFAULT_VOICE = "moshiko"
PRECISIONS: dict[str, int | None] = {"q4": 4, "q8": 8, "bf16": None}  # name -> bits (None: float)
DEFAULT_BITS = 4
GROUP_SIZE = {4: 32, 8: 64}  # group size of the q4 and q8 releases, by bits

MOSHI_FILES: dict[int | None, str] = {4: "model.q4.safetensors", 8: "model.q8.safetensors", None: "model.safetensors"}
MIMI_FILE = "tokenizer-e351c8d8-checkpoint125.safetensors"
TOKENIZER_FILE = "tokenizer_spm_32k_3.model"
CONFIG_FILE = "config.json"
TORCH_REPO = "kyutai/moshiko-pytorch-bf16"
# Kyutai's speech-to-text models (`python -m moshi_mlx.transcribe`): MLX layout; the 1B's PyTorch layout repository
# `-candle` also holds its end-of-turn heads (extra_heads); kyutai/stt-2.6b-en-mlx is English only, 2.5 s delay.
# As delayed-streams-modeling's scripts/stt_from_mic_mlx.py reads them: config.json names `mimi_name` and
# `tokenizer_name` (the LM: `moshi_name`, else model.safetensors), the Mimi file is in the PyTorch layout, and
# --vad takes the heads from `-candle`; Kyutai's MLX Lm names them `extra_heads.{i}` in both layouts.
STT_REPO = "kyutai/stt-1b-en_fr-mlx"
STT_REPO_VAD = "kyutai/stt-1b-en_fr-candle"

# The rest of the family this port runs, released in the PyTorch layout (bf16 `model.safetensors`, loaded as it is
# or converted with `python -m quantize`). All three are gated: the licence must be accepted on the model page.
PERSONAPLEX_REPO = "nvidia/personaplex-7b-v1"  # its config.json names only the model_type
MOSHIKA_RL_REPO, PERSONAPLEX_RL_REPO = "kyutai/moshika-rl-seamless", "kyutai/personaplex-rl-seamless"
FAMILY_REPOS = {
    MOSHIKA_RL_REPO: "Moshi (female voice) tuned by RL for pauses and turn-taking; CC BY-NC 4.0",
    PERSONAPLEX_RL_REPO: "PersonaPlex tuned by RL for pauses and turn-taking; CC BY-NC 4.0 + NVIDIA OML",
    PERSONAPLEX_REPO: "PersonaPlex 7B: Moshi with a voice prompt and a role; NVIDIA Open Model License",
}
PERSONAPLEX_REPOS = (PERSONAPLEX_REPO, PERSONAPLEX_RL_REPO)  # the ones that take a voice and a role
HIBIKI_REPO = "kyutai/hibiki-1b-mlx-bf16"  # Hibiki 1B for MLX: French speech in, English speech and text out; CC-BY 4.0
VOICES_ARCHIVE = "voices.tgz"  # PersonaPlex's voice presets (`voices/NAME.pt`), in the PersonaPlex repositories
# NVIDIA's README: natural (NAT) and varied (VAR) voices, female (F) and male (M)
PERSONA_VOICES = tuple(f"NAT{g}{i}" for g in "FM" for i in range(4)) + tuple(
    f"VAR{g}{i}" for g in "FM" for i in range(5)
)
DEFAULT_PERSONA_VOICE = "NATF2"  # the voice of NVIDIA's README examples
DEFAULT_ROLE = "You are a wise and friendly teacher. Answer questions or provide advice in a clear and engaging way."


def precision_name(bits: int | None) -> str:
    """'q4', 'q8', 'bf16': how the releases name a precision."""
    return "bf16" if bits is None else f"q{bits}"


def precision_label(bits: int | None) -> str:
    """'4-bit', '8-bit', 'bf16': how messages and the window name a precision."""
    return "bf16" if bits is None else f"{bits}-bit"


def mlx_repo(bits: int | None = DEFAULT_BITS, voice: str = DEFAULT_VOICE) -> str:
    """Kyutai's MLX repository for a voice and precision (`kyutai/moshika-mlx-q8`...); the voice is not checked."""
    return f"kyutai/{voice}-mlx-{precision_name(bits)}"


DEFAULT_REPO = mlx_repo()


def usual_lm_file(repo: str) -> str | None:
    """The LM file of a Kyutai Moshi release that has no config.json (the MLX repositories by voice and
    precision, the PyTorch one); None for any other repository (its config.json names its files, if any)."""
    if repo == TORCH_REPO:
        return MOSHI_FILES[None]
    return next((MOSHI_FILES[b] for v in VOICES for b in PRECISIONS.values() if repo == mlx_repo(b, v)), None)
