"""`python -m moshi_mlx.run`: talk with Moshi locally, or run it over an audio file.

Live (default): microphone in, Moshi's voice out, its words printed as it says them. File mode:
`--input user.wav --output moshi.wav`.
This module parses and checks flags and wires the library together; the runs themselves are
dialog/live.py's `run_live` and dialog/file_mode.py's `run_file`, driving ModelLoop (one thread owning
MLX) over MoshiPipeline (the model), AudioIO / FileAudioPort (sound) and Recorder.
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from typing import TYPE_CHECKING, Literal, NamedTuple

from . import release
from .cli.args import CliParser, model_files, name, number
from .cli.settings import check_model_settings
from .cli.signals import stopped
from .cli.tempdir import check_temp_folder
from .cli.wording import refused
from .errors import ConfigError, MoshiError

if TYPE_CHECKING:
    from .loading.hub import ModelFiles

# numpy and MLX are imported where used, inside main(): a Ctrl-C while they load stops the program quietly

FILE_MODE = "run over an audio file instead: --input FILE --output FILE"  # advice without a sound card
MAX_LAG = 250  # frames (20 s): more is no conversation, and the waiting audio would grow without bound


def kv_bits_choices() -> dict[str, int | Literal["auto"] | None]:
    """--kv-bits -> load_lm(kv_bits=...)."""
    from .loading.memory import KV_AUTO  # MLX comes with it: imported inside main() (see above)

    return {KV_AUTO: KV_AUTO, "8": 8, "16": None}


def build_parser() -> argparse.ArgumentParser:
    from .dialog.live import KEYS
    from .guidance import DEFAULT_CFG_COEF, MAX_CFG_COEF
    from .loading.memory import KV_AUTO
    from .sampling import SEED_RANGE, TEMP_RANGE, TOP_K_RANGE

    p = CliParser(
        prog="python -m moshi_mlx.run",
        description="Talk with Moshi on this machine (microphone and speakers), or run it over an audio file.",
        epilog="Weights come from the Hugging Face hub (cached after the first download) or local files. "
        "Headphones give the best experience; with speakers the echo canceller keeps Moshi from hearing itself. "
        f"While talking: {KEYS}.",
    )
    m = p.add_argument_group("model")
    m.add_argument(
        "--hf-repo",
        default=None,
        type=name,
        help=f"Hugging Face repo id or local folder (default {release.DEFAULT_REPO}; "
        f"{release.mlx_repo(voice='moshika')} for the female voice; a folder written by "
        "`python -m quantize`)",
    )
    m.add_argument(
        "-q",
        "--quantized",
        type=int,
        choices=tuple(release.GROUP_SIZE),
        default=None,
        help="pick model.q4 / model.q8 when the repo has several (default: detected from the files)",
    )
    m.add_argument("--moshi-weight", type=name, help="LM weights (.safetensors path or hf://owner/repo/file)")
    m.add_argument("--mimi-weight", type=name, help=f"Mimi codec weights ({release.MIMI_FILE})")
    m.add_argument("--tokenizer", type=name, help=f"text tokenizer ({release.TOKENIZER_FILE})")
    m.add_argument("--config", type=name, help="LM config JSON in Kyutai's schema (default: the repo's, else Moshi 7B)")
    m.add_argument(
        "--kv-bits",
        choices=tuple(kv_bits_choices()),
        default=KV_AUTO,
        help="bits of the LM's attention cache: 16 keeps it as the reference does; 8 takes 0.82 instead of "
        "1.46 GiB for the 7B (4-bit 7B: 5.35 instead of 5.99 GiB) at ~1%% error in attention "
        "scores; auto (default): 16 where it fits in memory, else 8",
    )
    m.add_argument(
        "--transcribe-user",
        nargs="?",
        const=release.STT_REPO,
        metavar="REPO",
        type=name,
        help="also transcribe what you say, with a Kyutai speech-to-text model (default "
        f"{release.STT_REPO}; a repo id or local folder): your words are shown and recorded with their times. "
        "It reuses the dialog's Mimi codes; memory for both models is checked first and, live, its speed once "
        "they load (where Moshi with it cannot keep up, the dialog goes on without it)",
    )
    v = p.add_argument_group("persona (PersonaPlex models)")
    v.add_argument(
        "--voice",
        type=name,
        metavar="NAME|FILE",
        help="the voice: a preset of the model (NATF0-3, NATM0-3, VARF0-4, VARM0-4; default NATF2), a preset .pt "
        "file, or a short recording of the voice (.wav, .flac)",
    )
    v.add_argument(
        "--role", metavar="TEXT", help='who Moshi is, e.g. "You are a wise and friendly teacher." (the default)'
    )
    s = p.add_argument_group("sampling")
    temp, top_k = number(float, *TEMP_RANGE), number(int, *TOP_K_RANGE)
    hibiki = " (a release's lm_gen_config first, as Kyutai's server and run_inference: Hibiki, the RL-tuned ones)"
    s.add_argument("--temp", type=temp, default=None, help=f"audio temperature (0: greedy; default 0.8{hibiki})")
    s.add_argument("--text-temp", type=temp, default=None, help=f"text temperature (0: greedy; default 0.7{hibiki})")
    s.add_argument("--top-k", type=top_k, default=None, help=f"audio top-k (default 250{hibiki})")
    s.add_argument("--text-top-k", type=top_k, default=None, help=f"text top-k (default 25{hibiki})")
    s.add_argument(
        "--cfg-coef",
        type=number(float, 0.0, MAX_CFG_COEF),
        default=DEFAULT_CFG_COEF,
        help="Hibiki: classifier-free guidance, higher keeps more of the speaker's voice (default "
        f"{DEFAULT_CFG_COEF:g}: none, as the reference; Kyutai suggests 3)",
    )
    s.add_argument(
        "--seed",
        type=number(int, *SEED_RANGE),
        default=None,
        help="makes sampling repeatable ({} to {})".format(*SEED_RANGE),
    )
    a = p.add_argument_group("live audio")
    a.add_argument("--list-devices", action="store_true", help="list audio devices and exit")
    a.add_argument("--input-device", type=name, help="microphone: index or part of its name (default: system default)")
    a.add_argument("--output-device", type=name, help="speaker: index or part of its name (default: system default)")
    a.add_argument(
        "--no-echo-cancel",
        action="store_true",
        help="turn off echo cancellation, which removes Moshi's own voice from the microphone so that it does "
        "not answer itself through the speakers (fine with headphones)",
    )
    a.add_argument(
        "--echo-suppressor",
        action="store_true",
        help="also dim what echo cancellation leaves of Moshi's voice (about 2 dB more removed; while you "
        "both talk your own voice may lose up to 2 dB in places)",
    )
    a.add_argument(
        "--max-lag",
        type=number(int, 0, MAX_LAG),
        default=2,
        help="frames (80 ms each) the model may fall behind before input is skipped (default 2)",
    )
    a.add_argument(
        "--record",
        metavar="DIR",
        type=name,
        help="save the conversation as it goes: user.wav, moshi.wav, transcript.jsonl (also in file "
        "mode); a folder that already holds a recording is refused, never overwritten",
    )
    f = p.add_argument_group("file mode")
    f.add_argument("--input", metavar="FILE", type=name, help="run over this audio file instead of the microphone")
    f.add_argument(
        "--output",
        metavar="FILE",
        type=name,
        help="where to write Moshi's answer (24 kHz), with --input, as it is produced; the extension "
        "names the format (.wav, .flac, .ogg, .mp3...). Never the input; on Ctrl-C or an error "
        "it holds the answer so far",
    )
    f.add_argument(
        "--transcript", metavar="FILE", type=name, help="timed transcript as JSON (text, words, pieces), with --input"
    )
    return p


# flags of a live conversation, which file mode would silently ignore -> whether the command line gives each
LIVE_ONLY = {
    "--input-device": lambda a: a.input_device is not None,
    "--output-device": lambda a: a.output_device is not None,
    "--no-echo-cancel": lambda a: a.no_echo_cancel,
    "--echo-suppressor": lambda a: a.echo_suppressor,
}


def _check_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.input is None and (args.output or args.transcript):
        p.error("--output and --transcript go with --input FILE (file mode)")
    if args.input is not None and args.output is None:
        p.error("file mode needs --output FILE for Moshi's answer")
    if args.input is not None:
        live = [f for f, on in LIVE_ONLY.items() if on(args)]
        if live:
            p.error(f"{live[0]} is for a live conversation; file mode (--input) uses no sound card: leave it out")
    if args.no_echo_cancel and args.echo_suppressor:
        p.error("--echo-suppressor works on echo cancellation's output: leave out --no-echo-cancel")


def _check_paths(args: argparse.Namespace) -> None:
    """Every file the run will write, checked before the model loads: its folder is writable, --output's
    extension names a format this machine writes, and none of them is the input or another output.

    Raises:
        MoshiError: what is wrong, in one line.
    """
    from .audio.files import audio_format, probe_audio
    from .dialog.recorder import check_free
    from .outputs import check_new_file

    protect = {"--input": args.input} | model_files(args)
    if args.output:
        audio_format(args.output)
        check_new_file(args.output, "--output", protect, probe=probe_audio)
        protect["--output"] = args.output
    if args.transcript:
        check_new_file(args.transcript, "--transcript", protect)
        protect["--transcript"] = args.transcript
    if args.record:
        for path in check_free(args.record).files:
            check_new_file(path, "recording file", protect)


# the sampling flags -> the names of the reference's LMGen arguments, as a release's lm_gen_config gives them
_GEN_CONFIG_KEYS = {"temp": "temp", "text_temp": "temp_text", "top_k": "top_k", "text_top_k": "top_k_text"}


def _sampling(args: argparse.Namespace, files: _Resolved):
    """Each sampling setting: the flag when given, else the release's lm_gen_config (Hibiki's, an RL-tuned
    checkpoint's: Kyutai's server and run_inference pass it to LMGen for every model), else the default."""
    from .pipeline import Sampling

    defaults = Sampling()
    released = files.gen_config
    values = {}
    for flag, key in _GEN_CONFIG_KEYS.items():
        given = getattr(args, flag)
        values[flag] = given if given is not None else released.get(key, getattr(defaults, flag))
    return Sampling(**values, seed=args.seed)


def _factory(
    args: argparse.Namespace,
    files: _Resolved,
    source_end=None,
    user_files: ModelFiles | None = None,
    persona=None,
):
    """The model of the run: Moshi (with `user_files`: an STT model transcribing the user too; PersonaPlex
    with its `persona`: voice and role), or Hibiki (model_type hibiki) translating until `source_end` says."""
    from .pipeline import MoshiPipeline

    sampling = _sampling(args, files)
    kv_bits = kv_bits_choices()[args.kv_bits]
    if files.kind == "hibiki":
        from .translation import TranslationPipeline

        extra = {"cfg_coef": args.cfg_coef, "source_end": source_end}
        return lambda: TranslationPipeline.from_files(files.files, sampling, kv_bits=kv_bits, **extra)
    if args.cfg_coef != 1.0:
        raise ConfigError(f"--cfg-coef is for a conditioned model such as Hibiki; {files.files.source} is Moshi")
    live = args.input is None  # the user's transcript is kept live only where it keeps up (stt/speed.py)
    return lambda: MoshiPipeline.from_files(
        files.files, sampling, kv_bits=kv_bits, user_files=user_files, persona=persona, live=live
    )


def _persona(args: argparse.Namespace, files: _Resolved):
    """A PersonaPlex model's voice and role, read before the model loads (a bad voice is said at once)."""
    from .config import LmConfig
    from .loading.hub import voices_folder
    from .persona.voices import resolve_persona

    cfg = LmConfig.preset() if files.files.config is None else LmConfig.from_json(files.files.config)
    voices = voices_folder(files.files) if cfg.is_personaplex else None
    return resolve_persona(args.voice, args.role, cfg, voices)


def _resolve(args: argparse.Namespace):
    from tqdm.auto import tqdm

    from .loading.hub import read_repo_config, resolve_model_files
    from .loading.memory import check_download_fits
    from .pipeline import check_configs

    files = resolve_model_files(
        args.hf_repo,
        args.quantized,
        moshi_weight=args.moshi_weight,
        mimi_weight=args.mimi_weight,
        tokenizer=args.tokenizer,
        config=args.config,
        tqdm_class=tqdm,
        before_download=check_download_fits,
    )
    cfg = check_configs(files)  # a bad value fails now, before minutes of loading (or a crash building the model)
    gen_config = read_repo_config(files.config)[0].get("lm_gen_config") if files.config is not None else None
    if gen_config is not None and not isinstance(gen_config, dict):
        raise ConfigError(f"{files.config}: lm_gen_config must be a JSON object of sampling settings")
    resolved = _Resolved(files, cfg.model_type, gen_config or {})
    try:
        _sampling(args, resolved)  # a release's sampling value out of range is said now (the flags are checked)
    except ConfigError as e:
        raise ConfigError(f"{files.config}: lm_gen_config: {e}") from None
    return resolved


class _Resolved(NamedTuple):
    files: ModelFiles  # what to load
    kind: str  # the config's model_type: "moshi", "hibiki" or "personaplex"
    gen_config: dict  # the release's lm_gen_config (sampling defaults of Kyutai's run_inference)


def _resolve_user_model(args: argparse.Namespace, files: _Resolved) -> ModelFiles | None:
    """The STT model of --transcribe-user (None without it), checked to be one and to fit in memory with Moshi."""
    if args.transcribe_user is None:
        return None
    if files.kind != "moshi":
        raise ConfigError(f"--transcribe-user is for a conversation with Moshi; {files.files.source} is {files.kind}")
    from tqdm.auto import tqdm

    from .loading.hub import resolve_model_files
    from .loading.memory import check_download_fits
    from .stt.user import check_dialog_model

    if args.input is None:  # live: its speed is checked against this budget once both load
        from .dialog.pacing import step_budget_ms

        step_budget_ms()
    user = resolve_model_files(args.transcribe_user, tqdm_class=tqdm, before_download=check_download_fits)
    try:
        check_dialog_model(files.files, user)
    except ConfigError as e:
        raise ConfigError(
            f"--transcribe-user {args.transcribe_user}: {e}; name one such as {release.STT_REPO}"
        ) from None
    return user


def _echo(args: argparse.Namespace):
    """The echo canceller of a live run, unless --no-echo-cancel; its residual suppressor with --echo-suppressor."""
    if args.no_echo_cancel:
        return None
    from .dialog.echo import EchoCanceller

    return EchoCanceller(suppress=1.0 if args.echo_suppressor else 0.0)


def _record_meta(
    args: argparse.Namespace, files: _Resolved, user_files: ModelFiles | None = None, persona=None
) -> dict:
    """What a recording's metadata says about the run."""
    meta = {
        "model": files.files.source,
        "moshi": str(files.files.moshi),
        "temp": _sampling(args, files).temp,
        "text_temp": _sampling(args, files).text_temp,
        "seed": args.seed,
    }
    if user_files is not None:  # the user's words are in the transcript too (speaker "user")
        meta["user_transcript_model"] = user_files.source
    if persona is not None:
        voice, role = persona
        meta |= {"voice": None if voice is None else voice.name, "role": role}
    return meta


def list_devices_main(audio_backend=None, without_device: str = FILE_MODE) -> int:
    """Prints the audio devices (`--list-devices`); with none, what works without one (`without_device`)."""
    from .audio.devices import list_devices

    devices = list_devices(audio_backend)
    for d in devices:
        print(d.describe())
    if not devices:
        print(f"no audio device found (no sound card, or none PortAudio can use); {without_device}")
    return 0


def main(argv: list[str] | None = None, audio_backend=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_args(parser, args)
    try:
        if args.list_devices:
            return list_devices_main(audio_backend)
        _check_paths(args)  # before minutes of loading and work
        check_temp_folder()
        check_model_settings()  # MOSHI_MLX_CPU_LANES, MOSHI_MLX_COMPILE: said now, not once the model has loaded
        if args.input is not None:
            from .audio.files import open_audio, past_full_scale_note
            from .dialog.file_mode import run_file

            audio = open_audio(args.input)  # a bad file fails now, before minutes of loading; read as it is stepped
            if peak := audio.fit_full_scale():
                print(past_full_scale_note(args.input, peak), file=sys.stderr)
            files = _resolve(args)
            user_files = _resolve_user_model(args, files)
            persona = _persona(args, files)
            source_end, new_port = None, None
            if files.kind == "hibiki":  # translation: the source's end is told to the model, which says when done
                from .translation import SourceEnd, TranslationFilePort

                source_end = SourceEnd()
                new_port = partial(TranslationFilePort, source_end=source_end)
            return run_file(
                _factory(args, files, source_end, user_files, persona),
                audio,
                args.output,
                source=args.input,
                transcript=args.transcript,
                max_lag_frames=args.max_lag,
                record=args.record,
                record_meta=_record_meta(args, files, user_files, persona),
                new_port=new_port,
            )
        from .audio.devices import AudioIO
        from .dialog.live import run_live

        audio = AudioIO(args.input_device, args.output_device, backend=audio_backend)  # a missing sound card is
        files = _resolve(args)  # said before the model is fetched (4.5 GB on a first run)
        user_files = _resolve_user_model(args, files)
        persona = _persona(args, files)
        return run_live(
            _factory(args, files, None, user_files, persona),
            audio,
            max_lag_frames=args.max_lag,
            echo=_echo(args),
            record=args.record,
            record_meta=_record_meta(args, files, user_files, persona),
        )
    except MoshiError as e:
        return refused(e, FILE_MODE)
    except KeyboardInterrupt as e:  # Ctrl-C (130); SIGTERM (143), SIGHUP (129) under run_cli
        return stopped(e)


def cli() -> None:
    """Console-script entry point: Linux re-runs on OpenBLAS first (moshi_mlx.cli.entry.run_cli)."""
    from .cli.entry import run_cli

    run_cli(main)


if __name__ == "__main__":
    cli()
