"""PersonaPlex's prompts: who Moshi is (a role, in text) and how it sounds (a voice, from a preset or a WAV).

voices.py reads the released voice presets without torch and builds a voice from audio; prompt.py feeds both to
the model before the conversation, as NVIDIA's reference (`LMGen.step_system_prompts`) does.
"""
