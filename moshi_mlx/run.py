"""`python -m moshi_mlx.run`: talk with Moshi locally, or run it over an audio file.

Live (default): microphone in, Moshi's voice out, its words printed as it says them. Press Enter for a
new conversation (same weights), m + Enter to mute or unmute the microphone, Ctrl-C to stop. File mode:
`--input user.wav --output moshi.wav`.
This module parses flags and wires the library together; the work happens in ModelLoop (one thread
owning MLX), MoshiPipeline (the model), AudioIO / FileAudioPort (sound) and Recorder.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from typing import TYPE_CHECKING

from . import release
from .audio import FRAME_S, MODEL_RATE
from .cli.args import CliParser, name, number, print_error
from .cli.signals import exit_code, stops_deferred
from .cli.wording import for_cli, worded
from .errors import MoshiError, NoAudioDeviceError
from .tempdir import check_temp_folder

if TYPE_CHECKING:
    from .dialog.loop import ModelLoop
# numpy and MLX are imported where used, inside main(): a Ctrl-C while they load stops the program quietly

FILE_MODE = "run over an audio file instead: --input FILE --output FILE"  # advice without a sound card
KEYS = "Enter starts a new conversation, m + Enter mutes or unmutes the microphone"  # see _keyboard
MAX_LAG = 250  # frames (20 s): more is no conversation, and the waiting audio would grow without bound


def kv_bits_choices() -> dict[str, int | str | None]:
    """--kv-bits -> load_lm(kv_bits=...)."""
    from .loading.memory import KV_AUTO  # MLX comes with it: imported inside main() (see above)

    return {KV_AUTO: KV_AUTO, "8": 8, "16": None}


def build_parser() -> argparse.ArgumentParser:
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
    m.add_argument("--hf-repo", default=None, type=name,
                   help=f"Hugging Face repo id or local folder (default {release.DEFAULT_REPO}; "
                        f"{release.mlx_repo(voice='moshika')} for the female voice; a folder written by "
                        "`python -m quantize`)")  # fmt: skip
    m.add_argument("-q", "--quantized", type=int, choices=tuple(release.GROUP_SIZE), default=None,
                   help="pick model.q4 / model.q8 when the repo has several (default: detected from the files)")
    m.add_argument("--moshi-weight", type=name, help="LM weights (.safetensors path or hf://owner/repo/file)")
    m.add_argument("--mimi-weight", type=name, help=f"Mimi codec weights ({release.MIMI_FILE})")
    m.add_argument("--tokenizer", type=name, help=f"text tokenizer ({release.TOKENIZER_FILE})")
    m.add_argument("--config", type=name, help="LM config JSON in Kyutai's schema (default: the repo's, else Moshi 7B)")
    m.add_argument("--kv-bits", choices=tuple(kv_bits_choices()), default=KV_AUTO,
                   help="bits of the LM's attention cache: 16 keeps it as the reference does; 8 takes 0.82 instead of "
                        "1.46 GiB for the 7B (4-bit 7B: 5.35 instead of 5.99 GiB) at ~1%% error in attention "
                        "scores; auto (default): 16 where it fits in memory, else 8")
    s = p.add_argument_group("sampling")
    temp, top_k = number(float, *TEMP_RANGE), number(int, *TOP_K_RANGE)
    s.add_argument("--temp", type=temp, default=0.8, help="audio temperature (0: greedy; default 0.8)")
    s.add_argument("--text-temp", type=temp, default=0.7, help="text temperature (0: greedy; default 0.7)")
    s.add_argument("--top-k", type=top_k, default=250, help="audio top-k (default 250)")
    s.add_argument("--text-top-k", type=top_k, default=25, help="text top-k (default 25)")
    s.add_argument("--seed", type=number(int, *SEED_RANGE), default=None,
                   help="makes sampling repeatable ({} to {})".format(*SEED_RANGE))
    a = p.add_argument_group("live audio")
    a.add_argument("--list-devices", action="store_true", help="list audio devices and exit")
    a.add_argument("--input-device", type=name, help="microphone: index or part of its name (default: system default)")
    a.add_argument("--output-device", type=name, help="speaker: index or part of its name (default: system default)")
    a.add_argument("--no-echo-cancel", action="store_true",
                   help="turn off echo cancellation (fine with headphones)")
    a.add_argument("--max-lag", type=number(int, 0, MAX_LAG), default=2,
                   help="frames (80 ms each) the model may fall behind before input is skipped (default 2)")
    a.add_argument("--record", metavar="DIR", type=name,
                   help="save the conversation as it goes: user.wav, moshi.wav, transcript.jsonl (also in file "
                        "mode); a folder that already holds a recording is refused, never overwritten")  # fmt: skip
    f = p.add_argument_group("file mode")
    f.add_argument("--input", metavar="FILE", type=name, help="run over this audio file instead of the microphone")
    f.add_argument("--output", metavar="FILE", type=name,
                   help="where to write Moshi's answer (24 kHz), with --input, as it is produced; the extension "
                        "names the format (.wav, .flac, .ogg, .mp3...). Never the input; on Ctrl-C or an error "
                        "it holds the answer so far")  # fmt: skip
    f.add_argument("--transcript", metavar="FILE", type=name,
                   help="timed transcript as JSON (text, words, pieces), with --input")
    return p


def _check_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.input is None and (args.output or args.transcript):
        p.error("--output and --transcript go with --input FILE (file mode)")
    if args.input is not None and args.output is None:
        p.error("file mode needs --output FILE for Moshi's answer")


def _check_paths(args: argparse.Namespace) -> None:
    """Every file the run will write, checked before the model loads: its folder is writable, --output's
    extension names a format this machine writes, and none of them is the input or another output.

    Raises:
        MoshiError: what is wrong, in one line.
    """
    from .audio.files import audio_format, probe_audio
    from .outputs import check_new_file
    from .dialog.recorder import check_free

    protect = {"--input": args.input}
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


def _factory(args: argparse.Namespace, files):
    from .pipeline import MoshiPipeline, Sampling

    sampling = Sampling(args.temp, args.text_temp, args.top_k, args.text_top_k, args.seed)
    return lambda: MoshiPipeline.from_files(files, sampling, kv_bits=kv_bits_choices()[args.kv_bits])


def _resolve(args: argparse.Namespace):
    from tqdm.auto import tqdm

    from .loading.hub import resolve_model_files
    from .loading.memory import check_download_fits
    from .pipeline import check_configs

    files = resolve_model_files(args.hf_repo, args.quantized, moshi_weight=args.moshi_weight,
                                mimi_weight=args.mimi_weight, tokenizer=args.tokenizer, config=args.config,
                                tqdm_class=tqdm, before_download=check_download_fits)  # fmt: skip
    check_configs(files)  # a bad value fails now, before minutes of loading (or a crash building the model)
    return files


def _wait_loaded(loop: ModelLoop, view) -> bool:
    """Waits for the model; `view` shows what loading said (its time and notes, or the error). False: it failed."""
    print("loading the model...", file=sys.stderr, flush=True)
    while not loop.loaded.wait(0.1):
        pass
    while not loop.events.empty():
        view.handle(loop.events.get())
    return loop.load_error is None


def _recorder(args: argparse.Namespace, files):
    if not args.record:
        return None
    from .dialog.recorder import Recorder

    return Recorder(args.record, meta={"model": files.source, "moshi": str(files.moshi), "temp": args.temp,
                                       "text_temp": args.text_temp, "seed": args.seed})  # fmt: skip


def run_live(args: argparse.Namespace, files, audio) -> int:
    """A conversation on `audio` (an AudioIO whose devices were found before the model was fetched)."""
    from .dialog.console import ConsoleView
    from .dialog.events import Error, SessionEnded
    from .dialog.loop import ModelLoop

    echo = None
    if not args.no_echo_cancel:
        from .dialog.echo import EchoCanceller

        echo = EchoCanceller()
    view = ConsoleView(worded=worded)
    loop = ModelLoop(_factory(args, files), max_lag_frames=args.max_lag)
    loop.start()
    try:
        if not _wait_loaded(loop, view):
            return 1
        recorder = _recorder(args, files)
        loop.begin_session(audio, recorder, echo)
        out_name = audio.output_info.name if audio.output_info else "default output"
        view.note(f"listening on {audio.input_info.name}, speaking on {out_name}. "
                  f"Talk to Moshi; {KEYS}, Ctrl-C stops.")  # fmt: skip
        if sys.stdin is not None and sys.stdin.isatty():
            threading.Thread(target=_keyboard, args=(loop, view), daemon=True).start()
        failed, stopped = False, None
        try:
            while True:
                ev = loop.events.get()
                view.handle(ev)
                if isinstance(ev, Error):
                    failed = True
                if isinstance(ev, SessionEnded):
                    break
        except KeyboardInterrupt as e:  # Ctrl-C, SIGTERM, SIGHUP: end the conversation, then say so
            stopped = e
            loop.end_session()
            while not loop.events.empty():
                view.handle(loop.events.get())
            view.finish()
        if recorder is not None:
            view.note(f"conversation saved in {args.record}" + (" (cut short, see above)" if recorder.error else ""))
        if stopped is not None:
            raise stopped
        return 1 if failed or (recorder is not None and recorder.error) else 0
    finally:
        loop.close()


def _keyboard(loop: ModelLoop, view, lines=None) -> None:
    """Enter: a new conversation; m + Enter: mute / unmute the microphone."""
    for line in sys.stdin if lines is None else lines:
        view.finish()
        if line.strip().lower() == "m":
            loop.set_muted(not loop.muted)
            view.note("-- microphone muted: Moshi hears silence (m + Enter to unmute) --" if loop.muted
                      else "-- microphone on --")  # fmt: skip
        else:
            loop.reset()
            view.note("-- new conversation --")


def run_file(args: argparse.Namespace, files, pcm) -> int:
    """Runs the model over `pcm`; the answer streams to --output. On an error or a stop (Ctrl-C, SIGTERM,
    SIGHUP) the answer and transcript so far are written, and said so once. Returns the exit status."""
    from .audio.file_port import FileAudioPort
    from .audio.files import AudioWriter
    from .dialog.console import ConsoleView
    from .dialog.loop import ModelLoop

    loop = ModelLoop(_factory(args, files), max_lag_frames=args.max_lag, stats_every=25)
    got = _Collected()
    loop.start()
    try:
        if not _wait_loaded(loop, ConsoleView(live=False, worded=worded)):  # says the load time and the model's notes, or why not
            return 1
        writer = AudioWriter(args.output)
        try:
            port = FileAudioPort(pcm, writer)
            loop.begin_session(port, _recorder(args, files), None)
            interrupted = _follow(loop, port, got)
            with stops_deferred() as later:  # a Ctrl-C now (or another one) would lose the answer
                loop.end_session()
                loop.close()
                got.drain(loop, port)
                port.close(complete=interrupted is None and got.error is None)
                code = _finish(args, writer, got, port, interrupted or (later[0] if later else None))
        except BaseException:
            writer.discard()
            raise
    finally:
        loop.close()
    return exit_code(later[0]) if later and interrupted is None and code == 0 else code


def _follow(loop: ModelLoop, port, got: _Collected) -> KeyboardInterrupt | None:
    """Follows the run with a progress bar until the input is done; the stop (Ctrl-C, SIGTERM...) that ended
    it early, if any."""
    from tqdm.auto import tqdm

    try:
        with tqdm(total=port.frames, unit="frame", desc="moshi", file=sys.stderr) as bar:
            done = False
            while not done:
                done = port.exhausted.wait(0.1)
                got.drain(loop, port)
                bar.update(port.frames_read - bar.n)
    except KeyboardInterrupt as e:
        return e
    return None


def _finish(args: argparse.Namespace, writer, got: _Collected, port, interrupted: KeyboardInterrupt | None) -> int:
    """Writes --output and --transcript (complete, or the answer so far), says what happened; the exit status."""
    from .outputs import write_failure, write_text

    written, failed = [], []
    for path, write in ((args.output, writer.commit),
                        (args.transcript, lambda: write_text(args.transcript, transcript_json(args.input, got.pieces, got.words)))):  # fmt: skip
        if path:
            try:
                write()
                written.append(str(path))
            except (OSError, MoshiError) as e:
                failed.append(f"{path} ({write_failure(e) if isinstance(e, OSError) else e})")
    print(transcript_text(got.pieces))
    done = f"{port.written / MODEL_RATE:.1f} s of {port.length / MODEL_RATE:.1f} s"
    kept = "; ".join(filter(None, (
        written and f"{' and '.join(written)} hold{'s' if len(written) == 1 else ''} the answer up to {done}",
        failed and f"could not write {' and '.join(failed)}")))  # fmt: skip
    if interrupted is not None:
        print(f"stopped: {kept}", file=sys.stderr)
        return exit_code(interrupted)
    errors = [f"{got.error} ({kept})" if got.error else (failed and kept), got.recording_error]
    for error in filter(None, errors):
        print_error(error)
    return 1 if any(errors) else 0


class _Collected:
    """What a file run reports: text pieces, whole words, errors."""

    def __init__(self) -> None:
        self.pieces: list[tuple[float, str]] = []
        self.words: list[tuple[float, str]] = []
        self.error: str | None = None
        self.recording_error: str | None = None

    def drain(self, loop: ModelLoop, port) -> None:
        from .dialog.events import Error, Notice, RecordingStopped, SessionEnded, Text, Word

        while not loop.events.empty():
            ev = loop.events.get()
            if isinstance(ev, Text):
                self.pieces.append((ev.t, ev.text))
            elif isinstance(ev, Word):
                self.words.append((ev.t, ev.word))
            elif isinstance(ev, Error):
                self.error = worded(ev.message, ev.hint)
            elif isinstance(ev, RecordingStopped):
                self.recording_error = ev.message
            elif isinstance(ev, Notice):
                print(f"\nnote: {ev.message}", file=sys.stderr)
            elif isinstance(ev, SessionEnded):
                port.exhausted.set()


def transcript_text(pieces: list[tuple[float, str]]) -> str:
    return " ".join("".join(p for _, p in pieces).split())


def transcript_json(source: str, pieces: list[tuple[float, str]], words: list[tuple[float, str]]) -> str:
    """The --transcript document: the text as shown, its words with start times, the pieces as they came."""
    doc = {
        "input": str(source),
        "frame_s": FRAME_S,
        "text": transcript_text(pieces),
        "words": [{"t": round(t, 3), "word": w} for t, w in words],
        "pieces": [{"t": round(t, 3), "text": p} for t, p in pieces],
    }
    return json.dumps(doc, indent=1, ensure_ascii=False) + "\n"


def list_devices_main(audio_backend=None) -> int:
    from .audio.devices import list_devices

    devices = list_devices(audio_backend)
    for d in devices:
        print(d.describe())
    if not devices:
        print(f"no audio device found (no sound card, or none PortAudio can use); {FILE_MODE}")
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
        if args.input is not None:
            from .audio.files import read_audio

            pcm = read_audio(args.input)  # a bad file fails now, before minutes of loading
            return run_file(args, _resolve(args), pcm)
        from .audio.devices import AudioIO

        audio = AudioIO(args.input_device, args.output_device, backend=audio_backend)  # a missing sound card is
        return run_live(args, _resolve(args), audio)  # said before the model is fetched (4.5 GB on a first run)
    except MoshiError as e:
        msg = for_cli(e)
        if isinstance(e, NoAudioDeviceError):
            msg = f"{msg.rstrip('.')}. Or {FILE_MODE}."
        print_error(msg)
        return 2
    except KeyboardInterrupt as e:  # Ctrl-C (130); SIGTERM (143), SIGHUP (129) under run_cli
        print("\nstopped", file=sys.stderr)
        return exit_code(e)


def cli() -> None:
    """Console-script entry point: Linux re-runs on OpenBLAS first (moshi_mlx.cli.entry.run_cli)."""
    from .cli.entry import run_cli

    run_cli(main)


if __name__ == "__main__":
    cli()
