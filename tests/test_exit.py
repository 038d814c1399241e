"""Our programs end as a person expects: the right exit code, no abort at exit, signals stop cleanly.

Run as a person runs them (`python -m moshi_mlx.run`, `python -m quantize` in a subprocess), with an LM
big enough that its matmuls go over the CPU lanes (support/models.py), each child pinned to one CPU as
on a busy machine: there, before moshi_mlx.mlx_thread, a process whose model thread had used MLX
aborted at exit ("terminate called without an active exception", 134) in most runs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import wave
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from support.cli import ABORT, REPO, Ran, assert_one_line_error, cli_env, finished, run_module, start_python
from support.models import make_lanes_repo


def _pin_to_one_cpu() -> None:  # in the child, before exec
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


@pytest.fixture
def start():
    """start(*argv): a child `python argv...` on one CPU, with two CPU lanes all the same (their number
    follows the CPUs); killed at the end of the test if still running."""
    children: list[subprocess.Popen] = []

    def _start(*argv, **env: str) -> subprocess.Popen:
        children.append(start_python(*argv, env=cli_env(MOSHI_MLX_CPU_LANES="2", **env), preexec_fn=_pin_to_one_cpu))
        return children[-1]

    yield _start
    for p in children:
        if p.poll() is None:
            p.kill()
            p.communicate()


def assert_clean_exit(r: Ran, code: int) -> None:
    assert r.code == code and ABORT not in r.err and "Traceback" not in r.err, r.why()


@pytest.fixture(scope="module")
def lanes_repo(tmp_path_factory) -> Path:
    return make_lanes_repo(tmp_path_factory.mktemp("lanes-model"))


@pytest.fixture(scope="module")
def voice(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("in") / "user.wav"
    t = np.arange(24_000) / 24_000
    pcm = 0.3 * np.sin(2 * np.pi * 170 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 2.5 * t))
    sf.write(str(path), pcm.astype(np.float32), 24_000)
    return path


_LOOP_THEN_EXIT = """
import sys
import mlx.core as mx
from moshi_mlx.dialog.events import FrameResult
from moshi_mlx.dialog.loop import ModelLoop

class Model:  # uses mx.random on the loop thread, as building and sampling a real model do
    def __init__(self):
        self.w = mx.random.normal((256, 256))
        mx.eval(self.w @ self.w)
    def step(self, pcm):
        return FrameResult(None)
    def reset(self):
        pass

loop = ModelLoop(Model).start()
loop.loaded.wait()
loop.close()
sys.exit(3)
"""


def test_a_process_that_used_a_model_loop_exits_with_its_own_code(start):
    # The minimal case: MLX work on the loop thread, close (join), exit. Old code: 134 nearly every time.
    for _ in range(3):
        assert_clean_exit(finished(start("-c", _LOOP_THEN_EXIT)), 3)


_EXIT_WHILE_BUSY = """
import sys, time
import numpy as np
import mlx.core as mx
from moshi_mlx import mlx_thread
from moshi_mlx.audio.file_port import FileAudioPort
from moshi_mlx.dialog.events import FrameResult
from moshi_mlx.dialog.loop import ModelLoop

class NoSink:
    def write(self, pcm):
        pass

class Slow:  # takes 1.5 s to load or to step (sys.argv[1]), then leaves a mark
    def __init__(self):
        mx.eval(mx.random.normal((256, 256)))
        if sys.argv[1] == "load":
            self.work()
    def work(self):
        time.sleep(1.5)
        open(sys.argv[2], "w").close()
    def step(self, pcm):
        self.work()
        return FrameResult(None)
    def reset(self):
        pass

loop = ModelLoop(Slow).start()
if sys.argv[1] == "step":
    loop.loaded.wait()
    loop.begin_session(FileAudioPort(np.zeros(1920 * 4, np.float32), NoSink()))
time.sleep(0.3)
mlx_thread.exit_process(5)  # what run_cli does once main() has returned
"""


@pytest.mark.parametrize("busy, waits", [("step", True), ("load", False)], ids=["mid-step", "loading"])
def test_exit_while_the_model_thread_is_busy(start, tmp_path, busy, waits):
    # A step in flight is waited for (a recording may be closing); a model still loading is not (it
    # would only delay a Ctrl-C), and the process leaves without the interpreter's teardown.
    assert_clean_exit(finished(start("-c", _EXIT_WHILE_BUSY, busy, tmp_path / "done")), 5)
    assert (tmp_path / "done").exists() == waits


def test_file_mode_exits_0_every_time(start, lanes_repo, voice, tmp_path):
    for i in range(3):
        out = tmp_path / f"moshi{i}.wav"
        assert_clean_exit(
            finished(start("-m", "moshi_mlx.run", "--hf-repo", lanes_repo, "--input", voice, "--output", out)), 0
        )
        assert sf.info(str(out)).frames == 24_000


def test_a_loading_error_is_one_line_and_exit_1(start, lanes_repo, voice, tmp_path):
    repo = tmp_path / "broken"
    repo.mkdir()
    for f in lanes_repo.iterdir():
        data = f.read_bytes()
        (repo / f.name).write_bytes(data[:-1000] if f.name == "model.q4.safetensors" else data)
    for _ in range(3):  # old code: an abort after the message in 7 runs out of 10
        r = finished(start("-m", "moshi_mlx.run", "--hf-repo", repo, "--input", voice, "--output", tmp_path / "o.wav"))
        assert_one_line_error(r, 1, "truncated")


def _wav_frames(path: Path) -> int:
    """Frames the header announces (Python's wave module trusts it), checked against the data on disk."""
    with wave.open(str(path)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (24_000, 1, 2)
        frames = w.getnframes()
    raw = path.read_bytes()
    on_disk = (len(raw) - raw.index(b"data") - 8) // 2  # the samples after the data chunk's header
    assert frames == on_disk, f"{path.name}: the header says {frames} frames, the file holds {on_disk}"
    return frames


def _wait_for_audio(path: Path, p: subprocess.Popen, samples: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.stat().st_size >= 44 + 2 * samples):
        assert p.poll() is None, finished(p).why()
        assert time.monotonic() < deadline, "no audio recorded"
        time.sleep(0.05)


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["ctrl-c", "sigterm"])
def test_a_stop_signal_ends_file_mode_and_finalises_the_recording(start, lanes_repo, tmp_path, sig, code):
    long = tmp_path / "long.wav"
    sf.write(str(long), np.zeros(24_000 * 60, np.float32), 24_000)  # far longer than the test waits
    rec = tmp_path / "rec"
    p = start(
        "-m",
        "moshi_mlx.run",
        "--hf-repo",
        lanes_repo,
        "--input",
        long,
        "--output",
        tmp_path / "out.wav",
        "--record",
        rec,
    )
    _wait_for_audio(rec / "user.wav", p, 1920 * 5)
    p.send_signal(sig)
    assert_clean_exit(finished(p), code)
    user, moshi = _wav_frames(rec / "user.wav"), _wav_frames(rec / "moshi.wav")
    assert user == moshi and user >= 1920 * 5 and user % 1920 == 0
    assert (rec / "transcript.jsonl").read_text().startswith('{"type": "header"')


def test_quantize_exits_0(start, lanes_repo, tmp_path):
    assert_clean_exit(
        finished(
            start(
                "-m",
                "quantize",
                lanes_repo.parent / "pytorch",
                "--out",
                tmp_path / "out",
                "--q-bits",
                "4",
                "--no-progress",
                "--report-steps",
                "2",
            )
        ),
        0,
    )
    assert (tmp_path / "out" / "model.q4.safetensors").is_file()


def test_sigterm_stops_quantize_and_removes_its_staging_folder(start, lanes_repo, tmp_path):
    out = tmp_path / "out"
    p = start(
        "-m",
        "quantize",
        lanes_repo.parent / "pytorch",
        "--out",
        out,
        "--q-bits",
        "4",
        "--no-progress",
        "--report-steps",
        "300",
    )  # the agreement report keeps it busy once the staging folder exists
    deadline = time.monotonic() + 60
    while not (out.is_dir() and any(out.iterdir())):
        assert p.poll() is None and time.monotonic() < deadline, finished(p).why()
        time.sleep(0.02)
    p.send_signal(signal.SIGTERM)
    r = finished(p)
    assert_clean_exit(r, 143)
    assert "nothing was written" in r.err
    assert not out.exists() or list(out.iterdir()) == []


def test_sigterm_ends_a_live_conversation_as_ctrl_c_does(tmp_path, capsys):
    # Live mode needs a sound card, so in-process on the fake one, inside the handlers `run_cli` installs.
    from test_run import GREEDY, _drive

    from moshi_mlx.audio.fake import FakeStreamFactory
    from moshi_mlx.cli.signals import stop_on_signals
    from moshi_mlx.run import main

    backend = FakeStreamFactory(input_rate=24_000, output_rate=48_000)
    driver = _drive(backend, lambda: os.kill(os.getpid(), signal.SIGTERM))
    with stop_on_signals():
        rc = main([*GREEDY, "--record", str(tmp_path / "rec"), "--no-echo-cancel"], audio_backend=backend)
    driver.join(10)
    assert rc == 143
    err = capsys.readouterr().err
    assert "saved in" in err and "stopped" in err and "Traceback" not in err
    user, moshi = _wav_frames(tmp_path / "rec" / "user.wav"), _wav_frames(tmp_path / "rec" / "moshi.wav")
    assert user == moshi and user > 0.5 * 24_000
    assert all(s.closed for s in backend.streams)


def _catches(pid: int, sig: int) -> bool:
    """Whether process `pid` has a handler for `sig` (Linux; elsewhere False, and the caller waits)."""
    status = Path(f"/proc/{pid}/status")
    lines = status.read_text().splitlines() if status.exists() else []
    caught = next((int(ln.split()[1], 16) for ln in lines if ln.startswith("SigCgt:")), 0)
    return bool(caught >> (sig - 1) & 1)


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["ctrl-c", "sigterm"])
def test_the_app_quits_on_a_stop_signal_with_its_code(start, tmp_path, sig, code):
    pytest.importorskip("PySide6")
    p = start("-m", "app", HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / "config"))  # its settings go here
    ready_by = time.monotonic() + 10
    while not _catches(p.pid, signal.SIGHUP) and time.monotonic() < ready_by:  # run_cli's handlers, then the app's
        assert p.poll() is None, finished(p).why()
        time.sleep(0.05)
    time.sleep(0.5)  # the window is up (a signal before it ends the app with the same code)
    p.send_signal(sig)
    assert_clean_exit(finished(p, timeout=60), code)


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)], ids=["sigterm", "sighup"])
def test_a_stop_signal_keeps_the_conversations_not_saved(start, tmp_path, sig, code):
    """At logout (SIGTERM, SIGHUP) nobody can answer "Save?": the app quits at once and keeps the recordings
    it would have asked about, saying where (before, they were deleted with the temporary folder)."""
    pytest.importorskip("PySide6")
    p = start(REPO / "tests" / "support" / "app_stopped_by_signal.py", tmp_path, TMPDIR=str(tmp_path))
    assert p.stdout.readline().strip() == "ready", finished(p).why()
    p.send_signal(sig)
    r = finished(p, timeout=60)
    assert_clean_exit(r, code)
    kept = [ln.split(" kept in ", 1)[1].split(" (")[0] for ln in r.err.splitlines() if " kept in " in ln]
    assert len(kept) == 1, r.why()
    folder = Path(kept[0])
    assert folder.parent == tmp_path
    with wave.open(str(folder / "conversation-001" / "user.wav")) as w:
        assert w.getnframes() > 0


def test_ctrl_c_stops_a_benchmark_and_says_so(start):
    """`python -m moshi_mlx.bench` stopped by Ctrl-C exited 130 saying nothing, where run, transcribe and
    quantize say "stopped": a Ctrl-C that main() does not handle is said by run_cli for every front end."""
    p = start("-m", "moshi_mlx.bench", "loop", "--seconds", "60", "--compute-ms", "0", PYTHONUNBUFFERED="1")
    assert p.stdout is not None and p.stdout.readline().startswith("rates"), finished(p).why()
    p.send_signal(signal.SIGINT)
    r = finished(p)
    assert_clean_exit(r, 130)
    assert r.err.strip().endswith("stopped"), r.why()


def test_ctrl_c_while_a_program_starts_is_no_traceback():
    """What `python -m` imports before main() runs is outside every handler: a Ctrl-C there printed a
    KeyboardInterrupt traceback (0.3 s of numpy and MLX imports, longer on a busy machine). Those imports now
    happen inside main(), where Ctrl-C ends the program with 130."""
    code = (
        "import sys, moshi_mlx.run, moshi_mlx.bench, quantize.__main__; "
        "print(' '.join(m for m in ('numpy', 'mlx.core') if m in sys.modules))"
    )
    p = subprocess.run(
        (sys.executable, "-c", code), env=cli_env(), cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert p.returncode == 0 and p.stdout.strip() == "", p.stdout + p.stderr


_STARTS = {  # a command of each front end that soon ends by itself (exit 0), its imports and re-execution done
    "run": ("moshi_mlx.run", "--list-devices"),
    "transcribe": ("moshi_mlx.transcribe", "--list-devices"),
    "quantize": ("quantize", "--help"),
    "bench": ("moshi_mlx.bench", "--help"),
    "app": ("app", "--help"),
}
_OURS = {"moshi_mlx", "quantize", "app"}


def _ctrl_c_while_starting(command: tuple[str, ...], delay: float) -> Ran:
    """`python -m command` given a Ctrl-C `delay` s after the first of our packages has loaded (as Python's
    import times on stderr tell), or none if it ended before."""
    p = start_python("-m", *command, env=cli_env(PYTHONPROFILEIMPORTTIME="1"))
    assert p.stderr is not None
    head = []
    for line in p.stderr:
        head.append(line)
        if line.rsplit("|", 1)[-1].strip() in _OURS:
            break
    time.sleep(delay)
    if p.poll() is None:
        p.send_signal(signal.SIGINT)
    r = finished(p)
    return Ran(r.argv, r.code, r.out, "".join(head) + r.err)


@pytest.mark.parametrize("front_end", list(_STARTS))
def test_ctrl_c_at_any_moment_of_a_start_ends_quietly(front_end):
    """From our first line on, a Ctrl-C ends every front end with 130 and no traceback, also in the imports
    before main() (standard library and our own light modules, ~0.1 s) and while the program re-executes itself
    on OpenBLAS (moshi_mlx.cpu.blas): both printed a KeyboardInterrupt traceback (exit 1, or killed by SIGINT)."""
    from concurrent.futures import ThreadPoolExecutor

    delays = (0.02, 0.05, 0.1, 0.15, 0.25)
    with ThreadPoolExecutor(2) as pool:
        runs = list(pool.map(lambda d: _ctrl_c_while_starting(_STARTS[front_end], d), delays))
    stopped = (130, -signal.SIGINT)  # -SIGINT: Python's own way out after a Ctrl-C (a shell says 130 for both)
    for r in runs:
        assert r.code in (0, *stopped) and "Traceback" not in r.err and ABORT not in r.err, r.why()
    assert any(r.code in stopped for r in runs), [r.code for r in runs]


def test_a_reader_that_stops_early_is_no_traceback(tmp_path):
    """`python -m moshi_mlx.transcribe --list-devices | head -1` or `bench ... | head`: the reader closes the
    pipe while the program still prints. It ends quietly (no traceback) with the SIGPIPE status a shell
    expects (141)."""
    import subprocess
    import sys

    from support.cli import REPO, cli_env

    script = (
        "import sys\n"
        "from moshi_mlx.cli.entry import run_cli\n"
        "def main():\n"
        "    for i in range(100000):\n"
        "        print('a line of output', i)\n"
        "    return 0\n"
        "run_cli(main)\n"
    )
    p = subprocess.Popen(
        (sys.executable, "-c", script), cwd=REPO, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert p.stdout is not None and p.stderr is not None
    p.stdout.readline()
    p.stdout.close()  # the reader goes away
    err = p.stderr.read().decode()
    assert p.wait(timeout=60) == 141, err
    assert "Traceback" not in err and "BrokenPipe" not in err, err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_error_a_stop_signal_caused_ends_as_the_stop_does(sig):
    """A Ctrl-C while numpy's C extension imports (in main(), about 1 s after `python -m quantize` starts)
    comes out as numpy's ImportError: it printed that traceback and exited 1. An error raised after a stop
    signal is the stop's doing: the program says "stopped" and exits 130 (143 for SIGTERM)."""
    script = (
        "import os, time\n"
        "from moshi_mlx.cli.entry import run_cli\n"
        "def main():\n"
        "    try:\n"
        f"        os.kill(os.getpid(), {int(sig)})\n"
        "        time.sleep(30)\n"
        "    except KeyboardInterrupt:  # as numpy's __init__ turns it into an ImportError\n"
        "        raise ImportError('Importing the numpy C-extensions failed.') from None\n"
        "    return 0\n"
        "run_cli(main)\n"
    )
    p = subprocess.run(
        (sys.executable, "-c", script), env=cli_env(), cwd=REPO, capture_output=True, text=True, timeout=60
    )
    r = Ran(("python", "-c", "..."), p.returncode, p.stdout, p.stderr)
    assert_clean_exit(r, 128 + sig)
    assert r.err.strip() == "stopped", r.why()


def test_standard_output_on_a_full_disk_or_closed_is_one_line_not_a_traceback(tmp_path):
    """`transcribe talk.wav > notes.txt` on a full disk (/dev/full here) printed an OSError traceback; with
    standard output closed (`>&-`, or `2>&-`) every front end died in an AttributeError before main()."""
    from support.cli import E2E

    argv = (sys.executable, "-m", "moshi_mlx.run", "--list-devices")  # prints on stdout, loads no model
    env = cli_env()
    with open("/dev/full", "w") as full:
        p = subprocess.run(argv, env=env, cwd=REPO, stdout=full, stderr=subprocess.PIPE, text=True, timeout=60)
    r = Ran(argv, p.returncode, "", p.stderr)
    assert_one_line_error(r, 1, "standard output", "no space left")
    for closed in (1, 2):
        p = subprocess.run(
            (*argv[:3], "--hf-repo", str(E2E), "--input", str(tmp_path / "none.wav"), "--output", "o.wav"),
            env=env,
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if closed == 2 else None,
            stderr=subprocess.PIPE if closed == 1 else None,
            text=True,
            timeout=60,
            preexec_fn=lambda fd=closed: os.close(fd),
        )
        r = Ran(argv, p.returncode, p.stdout or "", p.stderr or "")
        if closed == 1:
            assert_one_line_error(r, 2, "none.wav", "does not exist")  # the program ran, said why on stderr
        else:
            assert r.code == 2 and not r.out, r.why()


def test_a_warning_is_one_line(tmp_path):
    """A config's unknown keys are warned about: Python printed the library's file and line, then its source
    line, two lines of code to a person. Every front end says `warning: ...` in one line."""
    import json

    raw = json.loads((REPO / "tests" / "assets" / "stt" / "config.json").read_text())
    raw["stt_config"]["new_key"] = 1
    (tmp_path / "c.json").write_text(json.dumps(raw))
    r = run_module("moshi_mlx.bench", "lm", "--config", str(tmp_path / "c.json"))
    assert_one_line_error(r, 2, "speech-to-text")
    warned = [ln for ln in r.err.splitlines() if ln.startswith("warning:")]
    assert len(warned) == 1 and "new_key" in warned[0] and ".py:" not in r.err, r.why()


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_messages_that_cannot_be_written_lose_no_work(tmp_path):
    """`run --input ... --output answer.wav 2> log` with the log's disk full (/dev/full here): the first
    message ("loading the model...") raised OSError, and the run ended with 1 before writing the answer. Now
    the messages are lost, not the work: the answer is written whole and the status says success."""
    from support.cli import E2E

    sf.write(str(tmp_path / "in.wav"), np.zeros(24_000, np.float32), 24_000)
    argv = (sys.executable, "-m", "moshi_mlx.run", "--hf-repo", str(E2E), "--input", "in.wav", "--output", "a.wav")
    with open("/dev/full", "w") as full:
        p = subprocess.run(argv, env=cli_env(), cwd=tmp_path, stdout=subprocess.PIPE, stderr=full, timeout=120)
    assert p.returncode == 0, p.stdout
    assert sf.info(str(tmp_path / "a.wav")).frames == 24_000


def test_standard_output_that_cannot_encode_the_text_is_one_line(tmp_path):
    """A transcript naming `ü.wav` printed where standard output's encoding has no ü (PYTHONIOENCODING=ascii
    here; a Windows console's code page) ended in a UnicodeEncodeError traceback."""
    from support.stt import make_repo

    sf.write(str(tmp_path / "ü.wav"), np.zeros(24_000, np.float32), 24_000)
    repo = make_repo(tmp_path / "stt")
    r = run_module(
        "moshi_mlx.transcribe", tmp_path / "ü.wav", "--hf-repo", repo, "--format", "json", "--no-progress",
        env=cli_env(PYTHONIOENCODING="ascii"),
    )  # fmt: skip
    assert_one_line_error(r, 1, "standard output", "ascii", "PYTHONIOENCODING=utf-8")
