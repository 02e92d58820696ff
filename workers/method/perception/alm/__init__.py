"""Audio-language models (ALMs) behind the caption / question / re-caption tools.

Several families, one interface: `load_audio_language_model(path, device, generation)` picks
the family from the checkpoint and returns an `AudioLanguageModel` with `name`,
`sampling_rate`, `device`, `generate_batch(waveforms, prompts)` and the single-clip helpers
`caption`, `answer`, `re_caption`, `transcribe`. One module per family; families.py names
them, loading.py loads one, prompts.py holds what they are asked.

This package's own module imports nothing: a role that reads a prompt loads no model library.
"""
