"""Faults under a running batch: a corpus of bad audio files inside a batch of good ones,
and an LLM server that fails 30% of calls. Each bad item fails its own job with a reason a
person can act on; the rest complete; nothing hangs."""

import shutil
import struct

import numpy as np
import soundfile as sf

from models import JobStatus
from tests.stack import question_item, tone_wav

FAULTY_BATCH_TIMEOUT_S = 300


def bad_audio_corpus(folder) -> dict:
    """name -> (path, words the job's error must contain)."""
    folder.mkdir()
    good = tone_wav(folder / "good.wav")
    corpus = {}

    def add(name: str, expected: str, content: bytes | None = None):
        path = folder / name
        if content is not None:
            path.write_bytes(content)
        corpus[name] = (path, expected)

    add("empty.wav", "empty", b"")
    add("truncated.wav", "no audio samples", good.read_bytes()[:44])
    add("notes.wav", "not decodable audio", b"these are meeting notes, not a recording\n" * 50)
    add("noise.mp3", "not decodable audio", np.random.default_rng(1).bytes(20_000))
    sf.write(folder / "absurd.wav", np.zeros(20_000, dtype=np.float32), 1, subtype="PCM_16")  # 5.5 h header
    corpus["absurd.wav"] = (folder / "absurd.wav", "20000.0 s long")
    add("huge_header.wav", "not decodable audio", riff([b"fmt " + struct.pack("<I", 0xFFFFFF00) + PCM16_MONO_16K]))
    return corpus


PCM16_MONO_16K = struct.pack("<HHIIHH", 1, 1, 16000, 32000, 2, 16)  # a WAV fmt chunk's body


def riff(chunks: list[bytes], samples: bytes = b"\0\0" * 16000, data_size: int | None = None) -> bytes:
    """A WAV file written by hand: the chunks, then a data chunk (of a false size if asked)."""
    data = b"data" + struct.pack("<I", len(samples) if data_size is None else data_size) + samples
    return b"RIFF" + struct.pack("<I", 0xFFFFFFF0) + b"WAVE" + b"".join(chunks) + data


def test_each_bad_file_fails_its_own_job_and_the_rest_complete(stack, scripted_llm, tmp_path):
    stack.configure(llm_base_url=scripted_llm.base_url, coarse_tools='["signal_facts"]', max_audio_seconds=600)
    stack.start()
    corpus = bad_audio_corpus(tmp_path / "bad")
    flac_named_wav = tmp_path / "really_flac.wav"  # a mislabelled extension that is still audio
    sf.write(tmp_path / "x.flac", np.zeros(8000, dtype=np.float32), 16000)
    shutil.move(tmp_path / "x.flac", flac_named_wav)
    items = [question_item(f"bad-{name}", path) for name, (path, _) in corpus.items()]
    items += [question_item(f"good-{i}", tone_wav(tmp_path / f"good{i}.wav", freq=300 + 50 * i)) for i in range(4)]
    items.append(question_item("good-flac-named-wav", flac_named_wav))
    # A header claiming 4 GB over one second of samples (as a recorder cut off mid-stream
    # writes it): the samples that are there are audio.
    cut_off = tmp_path / "claims_4gb.wav"
    cut_off.write_bytes(riff([b"fmt " + struct.pack("<I", 16) + PCM16_MONO_16K], data_size=0xFFFFFFE0))
    items.append(question_item("good-header-claims-4gb", cut_off))

    batch_id = stack.submit(items)
    stack.wait_for_batch(batch_id, timeout=FAULTY_BATCH_TIMEOUT_S)

    jobs = {j.custom_id: j for j in stack.jobs(batch_id)}
    for name, (_, expected) in corpus.items():
        job = jobs[f"bad-{name}"]
        assert job.status == JobStatus.ERRORED, (name, job.status)
        assert name in job.error and expected in job.error, (name, job.error)
    for custom_id, job in jobs.items():
        if custom_id.startswith("good-"):
            assert job.status == JobStatus.SUCCEEDED, (custom_id, job.error)


def test_an_llm_failing_30_percent_of_calls_delays_but_loses_nothing(stack, scripted_llm, tmp_path):
    scripted_llm.inject_faults(rate=0.3, seed=7, hang_s=2.5)
    stack.configure(llm_base_url=scripted_llm.base_url, coarse_tools='["signal_facts"]',
                    llm_timeout_s=1, llm_max_retries=2, max_attempts=4)
    stack.start()
    clips = [tone_wav(tmp_path / f"t{i}.wav", freq=200 + 10 * i) for i in range(30)]
    batch_id = stack.submit([question_item(f"q{i:02d}", clip) for i, clip in enumerate(clips)], max_iters=1)

    stack.wait_for_batch(batch_id, timeout=FAULTY_BATCH_TIMEOUT_S)  # nothing hangs

    faults = [r["fault"] for r in scripted_llm.requests if r["fault"]]
    assert {500, 429, "hang", "garbage"} <= set(faults), faults  # every kind of fault really happened
    jobs = stack.jobs(batch_id)
    assert all(j.status in (JobStatus.SUCCEEDED, JobStatus.ERRORED) for j in jobs)
    errored = [j for j in jobs if j.status == JobStatus.ERRORED]
    for job in errored:  # a failure names the step, the attempts and the last cause
        assert "failed after 4 attempt(s); last error:" in job.error, job.error
    print(f"{len(errored)} of {len(jobs)} errored; {len(faults)} faults in {len(scripted_llm.requests)} calls")
    assert len(errored) <= 3, [j.error for j in errored]  # retries carry almost every item through
    succeeded = [j for j in jobs if j.status == JobStatus.SUCCEEDED]
    assert all(j.answer in j.choices or j.normalisation == "unmapped" for j in succeeded)
