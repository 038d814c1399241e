"""Terminal view of a dialog: transcript as it comes, status line, notes."""

from __future__ import annotations

import io

from moshi_mlx.dialog.console import ConsoleView
from moshi_mlx.dialog.events import Error, Loaded, Skipped, Stats, Text


def stats(frame: int, skipped: int = 0) -> Stats:
    return Stats(
        frame=frame,
        step_ms=60.0,
        step_ms_avg=61.0,
        rtf=0.76,
        lag_ms=10.0,
        output_queued_ms=40.0,
        frames_skipped=skipped,
        output_dropped=0,
        output_trimmed_ms=0.0,
        input_db=-30.0,
        output_db=-20.0,
        loop_ms=1.0,
        rtf_sustained=0.76,
    )


def test_pipe_output_keeps_transcript_clean():
    out, err = io.StringIO(), io.StringIO()
    v = ConsoleView(out, err, live=False)
    for i, piece in enumerate(["Hel", "lo", " there", "!"]):
        v.handle(Text(piece, i * 0.08, i))
        v.handle(stats(i))
    v.handle(Skipped(3, 3, 0.3))
    v.handle(Error("device unplugged"))
    assert out.getvalue() == "Hello there!"
    assert "RTF 0.76" in err.getvalue() and err.getvalue().count("RTF") == 1  # throttled
    assert "skipped 3 input frame" in err.getvalue() and "error: device unplugged" in err.getvalue()


def test_terminal_redraws_status_after_the_transcript_line():
    out, err = io.StringIO(), io.StringIO()
    v = ConsoleView(out, err, live=True)
    v.handle(Text("Hello", 0.0, 0))
    v.handle(stats(1))
    v.handle(Text(" there", 0.08, 1))
    last = out.getvalue().split("\r")[-1]
    assert last.startswith("\x1b[KHello there") and "RTF 0.76" in last
    for i in range(60):  # long text wraps at word starts
        v.handle(Text(" word", 0.1 * i, i))
    assert "\n" in out.getvalue() and len(v.line) < 200


def test_a_turns_end_closes_the_terminal_line_and_the_next_words_start_a_new_one():
    from moshi_mlx.dialog.events import TurnEnded

    out = io.StringIO()
    v = ConsoleView(out, io.StringIO(), live=True)
    for ev in (Text("Hello", 0.0, 0), TurnEnded(0.08), Text(" again", 0.16, 2)):
        v.handle(ev)
    assert "Hello [end of turn]\n" in out.getvalue() and v.line == "again"


def test_the_models_notes_are_shown_when_it_has_loaded():
    out, err = io.StringIO(), io.StringIO()
    v = ConsoleView(out, err, live=False)
    v.handle(Loaded(3.2, ("Memory is tight: the attention cache is stored at 8 bits.",)))
    assert "model loaded in 3.2 s" in err.getvalue() and "stored at 8 bits" in err.getvalue()
    assert out.getvalue() == ""


def test_a_machine_far_slower_than_real_time_is_told_once():
    out, err = io.StringIO(), io.StringIO()
    v = ConsoleView(out, err, live=False)
    slow = [stats(i)._replace(step_ms_avg=7600.0, rtf=95.0, rtf_sustained=95.0) for i in range(1, 9)]
    v.handle(slow[0]._replace(rtf_sustained=None))  # warm-up: not judged yet
    v.handle(slow[1]._replace(rtf_sustained=0.5))  # one slow step on a machine that keeps up
    assert "slower than real time" not in err.getvalue()
    for s in slow[2:]:
        v.handle(s)
    assert err.getvalue().count("95x slower than real time (7.6 s per 80 ms frame)") == 1
    assert "--input FILE" in err.getvalue()
    v2 = ConsoleView(io.StringIO(), err2 := io.StringIO(), live=False)
    for i in range(1, 30):
        v2.handle(stats(i))  # RTF 0.76 keeps up
    assert "slower" not in err2.getvalue()
