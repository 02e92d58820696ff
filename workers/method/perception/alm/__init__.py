"""Audio-language models (ALMs) behind the caption / question / re-caption tools.

Several families, one interface: `load_audio_language_model(path, device, generation)` picks
the family from the checkpoint and returns an `AudioLanguageModel` with `name`,
`sampling_rate`, `device`, `generate_batch(waveforms, prompts)` and the single-clip helpers
`caption`, `answer`, `re_caption`, `transcribe`. One module per family; families.py names
them, loading.py loads one; what they are asked is workers/method/alm_prompts.py.

This package's own module imports nothing, so importing one family loads no other.
"""
