"""`python -m moshi_mlx.transcribe`: Kyutai's speech-to-text models over audio files, or the microphone live.

    python -m moshi_mlx.transcribe talk.wav                          the text, on standard output
    python -m moshi_mlx.transcribe a.mp3 b.flac --format srt --output subs/    one subtitle file each
    python -m moshi_mlx.transcribe --mic                             a live transcript in the terminal

Files are fed as the reference feeds them (moshi_mlx/stt/feed.py: silence prefix, end padding that flushes
the last words) and words are timed as it times them (the model's delay taken off). This module parses
flags and wires the library together; one thread owns all MLX work (moshi_mlx.mlx_thread).
"""

from __future__ import annotations

import argparse
import queue
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from . import release
from .cli.args import CliParser, model_files, name, print_error
from .cli.settings import check_model_settings
from .cli.signals import stopped
from .cli.tempdir import check_temp_folder
from .cli.wording import for_cli, refused
from .errors import AudioFormatError, ConfigError, MoshiError, OutputError
from .stt.formats import FORMATS

# numpy and MLX are imported where used, inside main(): a Ctrl-C while they load stops the program quietly
if TYPE_CHECKING:
    from .audio.files import AudioInput


def build_parser() -> argparse.ArgumentParser:
    p = CliParser(
        prog="python -m moshi_mlx.transcribe",
        description="Transcribe audio files, or the microphone live, with Kyutai's streaming speech-to-text "
        "models (kyutai/stt-1b-en_fr: English and French, 0.5 s delay; kyutai/stt-2.6b-en: English, 2.5 s).",
        epilog="Words are timed as Kyutai's reference times them: the model's delay is taken off. Weights come "
        "from the Hugging Face hub (cached after the first download) or a local folder.",
    )
    p.add_argument("files", nargs="*", metavar="FILE", type=name, help="audio files (WAV, FLAC, OGG, MP3, ...)")
    p.add_argument("--format", choices=FORMATS, help="txt (default), json (words with times), srt or vtt")
    p.add_argument(
        "-o",
        "--output",
        metavar="PATH",
        type=name,
        help="with one FILE: the transcript's file; with several: a folder that gets FILE's name with the "
        "format's extension for each. Default: standard output. Files appear only once complete",
    )
    p.add_argument("--mic", action="store_true", help="transcribe the microphone live, in the terminal (Ctrl-C stops)")
    p.add_argument("--input-device", type=name, help="microphone for --mic: index or part of its name")
    p.add_argument("--list-devices", action="store_true", help="list audio devices and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on standard error")
    m = p.add_argument_group("model")
    m.add_argument(
        "--hf-repo",
        type=name,
        default=release.STT_REPO,
        help=f"Hugging Face repo id or local folder of an STT model (default {release.STT_REPO}; "
        f"{release.STT_REPO_VAD} has the end-of-turn head)",
    )
    m.add_argument("--moshi-weight", type=name, help="the model's weights (.safetensors path or hf://owner/repo/file)")
    m.add_argument("--mimi-weight", type=name, help="Mimi codec weights")
    m.add_argument("--tokenizer", type=name, help="text tokenizer (sentencepiece .model)")
    m.add_argument("--config", type=name, help="the model's config JSON in Kyutai's schema (default: the repo's)")
    return p


WITHOUT_MIC = "transcribe audio FILEs instead of --mic"  # what works without a sound card


def _check_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.list_devices:
        if args.files or args.mic or args.output:
            p.error("--list-devices lists the sound cards and exits: leave out the FILEs, --mic and --output")
        return
    if args.mic and args.format:
        p.error("--format goes with FILEs; --mic shows the transcript in the terminal")
    args.format = args.format or "txt"
    if args.mic and args.files:
        p.error("--mic transcribes the microphone: leave out the FILEs, or --mic")
    if not args.mic and not args.files:
        p.error("name the audio FILEs to transcribe, or --mic for the microphone")
    if args.mic and args.output:
        p.error("--output goes with FILEs; --mic shows the transcript in the terminal")
    if args.input_device and not args.mic:
        p.error("--input-device goes with --mic")


def output_paths(args: argparse.Namespace) -> list[Path | None]:
    """Where each FILE's transcript goes (None: standard output), checked before any work.

    Raises:
        MoshiError: an output that cannot be written, or would be an input or another output.
    """
    from .outputs import check_new_file, names_folder

    if args.output is None:
        return [None] * len(args.files)
    several = len(args.files) > 1
    protect = {(f"FILE {i}" if several else "FILE"): f for i, f in enumerate(args.files, 1)} | model_files(args)
    if len(args.files) == 1:
        if Path(args.output).is_dir() or names_folder(args.output):
            paths = [Path(args.output) / f"{Path(args.files[0]).stem}.{args.format}"]
        else:
            paths = [Path(args.output)]
    else:
        folder = Path(args.output)
        if folder.exists() and not folder.is_dir():
            raise OutputError(f"--output {folder} is a file: with several FILEs, name a folder (created if missing)")
        paths = [folder / f"{Path(f).stem}.{args.format}" for f in args.files]
        seen: dict[Path, str] = {}
        for f, path in zip(args.files, paths):
            if path in seen:
                raise OutputError(f"{seen[path]} and {f} would both be transcribed to {path}: transcribe them apart")
            check_new_file(path, "--output", protect)
            if path.exists():  # files the person did not name one by one are never replaced
                raise OutputError(f"{path} exists already: remove it or pick another --output folder")
            seen[path] = f
        return list(paths)
    return [check_new_file(paths[0], "--output", protect)]


def _resolve(args: argparse.Namespace):
    from tqdm.auto import tqdm

    from .config import LmConfig
    from .loading.hub import resolve_model_files
    from .loading.memory import check_download_fits

    files = resolve_model_files(
        args.hf_repo,
        moshi_weight=args.moshi_weight,
        mimi_weight=args.mimi_weight,
        tokenizer=args.tokenizer,
        config=args.config,
        tqdm_class=tqdm,
        before_download=check_download_fits,  # a model too big for this machine is refused before the download
    )
    if files.config is None:
        raise ConfigError(f"{files.source} has no config.json: a speech-to-text model is described by its config")
    cfg = LmConfig.from_json(files.config)
    if not cfg.is_stt:
        raise ConfigError(
            f"{files.source} holds a Moshi dialogue model, not a speech-to-text model (model_type 'stt'): "
            f"pass one with --hf-repo, e.g. {release.STT_REPO} (talk with Moshi with python -m moshi_mlx.run)"
        )
    return files


class _Job:
    """The MLX thread's side of a file run: loads the model, transcribes each file, reports on a queue."""

    def __init__(self, files, inputs: list[tuple[str, AudioInput]], fmt: str) -> None:
        self.files, self.inputs, self.fmt = files, inputs, fmt
        self.events: queue.SimpleQueue = queue.SimpleQueue()
        self.stop = threading.Event()

    def run(self) -> None:
        from .stt.session import SttSession

        try:
            session = SttSession.from_files(self.files)
            self.events.put(("loaded", session.notes))
            for i, (path, audio) in enumerate(self.inputs):
                try:
                    body = self._transcribe(session, i, path, audio)
                except AudioFormatError as e:  # changed or removed since it was checked: said, the others go on
                    self.events.put(("failed", i, for_cli(e)))
                    continue
                if body is None:
                    return
                self.events.put(("done", i, body))
        except MoshiError as e:
            self.events.put(("error", for_cli(e)))
        except Exception as e:  # noqa: BLE001 (a bug: one line here, the exit status says it failed)
            self.events.put(("error", f"transcription failed: {type(e).__name__}: {e}"))
        finally:
            self.events.put(("end",))

    def _transcribe(self, session, i: int, path: str, audio: AudioInput) -> str | None:
        """File `i` as the format asks (None: stopped)."""
        from .stt.formats import render

        frames = session.frames_of(audio)
        self.events.put(("file", i, len(frames)))
        session.reset()
        tokens, turns = [], []
        for frame in frames:
            if self.stop.is_set():
                return None
            out = session.encode_step(frame)
            tokens.append(out.token)
            turns.append(out.end_of_turn)
            self.events.put(("frame", i))
        t = session.transcript(tokens, turns)
        pad = session.cfg.existing_text_padding_id
        text = " ".join(session.text.sp.DecodeIds([x for x in tokens if x > pad]).split())
        meta = {"file": path, "model": self.files.source}
        return render(self.fmt, text, t.words, meta, t.turn_ends if session.has_end_of_turn else None)


def run_files(args: argparse.Namespace, files, inputs: list[tuple[str, AudioInput]], outputs: list[Path | None]) -> int:
    """Transcribes every input on an MLX thread; writes each transcript as it completes. Returns the status."""
    from tqdm.auto import tqdm

    from .mlx_thread import start_owner_thread
    from .outputs import write_failure, write_text

    job = _Job(files, inputs, args.format)
    start_owner_thread(job.run, "transcribe", stop=lambda: job.stop.set() or True)
    print("loading the model...", file=sys.stderr, flush=True)
    bar, failed = None, False
    try:
        while True:
            ev = job.events.get()
            kind = ev[0]
            if kind == "end":
                break
            if kind == "loaded":
                for note in ev[1]:
                    print(f"note: {note}", file=sys.stderr)
            elif kind == "file":
                if bar is not None:
                    bar.close()
                desc = Path(inputs[ev[1]][0]).name
                bar = tqdm(total=ev[2], unit="frame", desc=desc, file=sys.stderr, disable=args.no_progress)
            elif kind == "frame" and bar is not None:
                bar.update(1)
            elif kind == "done":
                if bar is not None:
                    bar.close()
                    bar = None
                path = outputs[ev[1]]
                if path is None:
                    if len(inputs) > 1:
                        print(f"==> {inputs[ev[1]][0]} <==")
                    sys.stdout.write(ev[2])
                    sys.stdout.flush()
                else:
                    try:
                        write_text(path, ev[2])
                    except OSError as e:
                        print_error(f"cannot write {path}: {write_failure(e, 'pick another --output')}")
                        job.stop.set()
                        failed = True
            elif kind == "failed":  # this file only
                if bar is not None:
                    bar.close()
                    bar = None
                print_error(ev[2])
                failed = True
            elif kind == "error":
                if bar is not None:
                    bar.close()
                    bar = None
                print_error(ev[1])
                return 1  # the work failed: loading the model is work, as in run (a damaged file found there)
    except KeyboardInterrupt:
        job.stop.set()
        if bar is not None:
            bar.close()
        raise
    return 1 if failed else 0


def run_mic(args: argparse.Namespace, audio, files) -> int:
    """A live transcript of the microphone in the terminal, until Ctrl-C."""
    from .cli.wording import worded
    from .dialog.console import ConsoleView, wait_loaded
    from .dialog.events import Error, SessionEnded
    from .dialog.loop import ModelLoop
    from .stt.session import SttSession

    view = ConsoleView(worded=worded)
    loop = ModelLoop(lambda: SttSession.from_files(files), max_lag_frames=2)
    loop.start()
    try:
        if not wait_loaded(loop, view):
            return 1
        loop.begin_session(audio, None, None)
        view.note(
            f"listening on {audio.input_info.name}: speak, your words appear as they are recognised; Ctrl-C stops."
        )
        failed = False
        try:
            while True:
                ev = loop.events.get()
                view.handle(ev)
                failed = failed or isinstance(ev, Error)
                if isinstance(ev, SessionEnded):
                    break
        except KeyboardInterrupt:
            loop.end_session()
            while not loop.events.empty():
                view.handle(loop.events.get())
            view.finish()
            raise
        return 1 if failed else 0
    finally:
        loop.close()


def _read(path: str) -> AudioInput:
    """An input FILE at the model's rate, read as it is transcribed; NaN or infinite samples (a broken file)
    silenced, a file far past full scale scaled down, each said."""
    from .audio.files import open_audio, past_full_scale_note

    audio = open_audio(path)
    audio.silence_non_finite = True
    if audio.non_finite:
        note = f"note: {path} holds {audio.non_finite} NaN or infinite samples (a broken file): transcribed as silence"
        print(note, file=sys.stderr)
    if peak := audio.fit_full_scale():
        print(past_full_scale_note(path, peak), file=sys.stderr)
    return audio


def main(argv: list[str] | None = None, audio_backend=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_args(parser, args)
    try:
        if args.list_devices:
            from .run import list_devices_main

            return list_devices_main(audio_backend, WITHOUT_MIC)
        check_temp_folder()  # where MLX compiles at the first step: refused now, not after loading
        check_model_settings()  # likewise
        if args.mic:
            from .audio.devices import AudioIO

            audio = AudioIO(args.input_device, backend=audio_backend, output=False)  # a transcript plays nothing
            return run_mic(args, audio, _resolve(args))
        outputs = output_paths(args)  # before minutes of loading and work
        inputs = [(f, _read(f)) for f in args.files]  # a bad file fails now, before the model loads
        return run_files(args, _resolve(args), inputs, outputs)
    except MoshiError as e:
        return refused(e, WITHOUT_MIC)
    except KeyboardInterrupt as e:  # Ctrl-C (130); SIGTERM (143), SIGHUP (129) under run_cli
        return stopped(e)


def cli() -> None:
    """Console-script entry point (moshi_mlx.cli.entry.run_cli: OpenBLAS, signals, MLX threads at exit)."""
    from .cli.entry import run_cli

    run_cli(main)


if __name__ == "__main__":
    cli()
