"""Kyutai's streaming speech-to-text models (`model_type: stt`, kyutai/stt-1b-en_fr, kyutai/stt-2.6b-en).

The same temporal transformer as Moshi's, over the 32 Mimi codebooks of the audio, with no depformer:
its text stream is the transcript, lagging the audio by `SttConfig.audio_delay_seconds`.

  stream.py   `Stt`: one 80 ms step over an `Lm` (the reference's `LMGen` with dep_q 0), the extra heads
  feed.py     how the reference feeds a file (silence prefix, end padding) and times its words
  words.py    text tokens -> words with start and end times (the reference's word timestamps)
  turns.py    end of turn from the extra heads (Kyutai's rule; the one owner: live, files, the dialog)
  session.py  Mimi + Stt + text: one frame of audio in, a token and its text out (files and the microphone)
  user.py     the dialog's user transcript, from the dialog's own Mimi codes (`run --transcribe-user`)
  speed.py    whether that transcript keeps up live: the frame timed with and without it once loaded
  formats.py  txt, json, srt and vtt transcripts
`python -m moshi_mlx.transcribe` is the command line.
"""
