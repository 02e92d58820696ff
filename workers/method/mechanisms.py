"""The `crosscheck` pipeline's mechanisms, each of which a batch may switch off, so one set of
items can be re-run with one mechanism missing (an ablation) and scored side by side with
`agr eval`. Perception results are cached by audio, tool, model and arguments, so a re-run
with a reasoning-side mechanism off pays no perception again.

Light on purpose: the API and CLI read it without loading any tool.
"""

MECHANISMS = {
    "round0_evidence": "round 0 runs every cheap offline tool (off: the configured coarse tools)",
    "alm_ensemble": "every configured audio-language model captions the clip and its thirds, and answers the "
                    "question itself (off: the primary model's caption only)",
    "agreement_gate": "the audio models' agreement ends the loop with their answer; their disagreement is put to "
                      "the interaction agent to resolve",
    "trust_labels": "the document shows each item's source kind, trust and its tool's limits",
    "self_consistency": "the answering agent is sampled several times and its answers voted on",
    "audio_decision": "the audio model hears the clip with an evidence summary and answers; the reasoner "
                      "arbitrates when it differs from the text-side answer",
}
PIPELINES_WITH_MECHANISMS = ("crosscheck",)


def resolved(pipeline: str, asked: dict | None) -> dict[str, bool]:
    """Every mechanism of `pipeline` on or off: on unless `asked` switches it off.
    ValueError names an unknown mechanism, or a pipeline that has none."""
    asked = asked or {}
    if pipeline not in PIPELINES_WITH_MECHANISMS:
        if asked:
            raise ValueError(f"mechanisms are switches of the {', '.join(PIPELINES_WITH_MECHANISMS)} pipeline, "
                             f"not of {pipeline!r}")
        return {}
    if unknown := sorted(set(asked) - set(MECHANISMS)):
        raise ValueError(f"unknown mechanism(s) {unknown}; known: {', '.join(MECHANISMS)}")
    if bad := sorted(name for name, on in asked.items() if not isinstance(on, bool)):
        raise ValueError(f"mechanism switches are true or false: {bad}")
    return {name: bool(asked.get(name, True)) for name in MECHANISMS}


def is_on(mechanisms: dict[str, bool] | None, name: str) -> bool:
    """Whether a job uses `name`: a job of a pipeline without switches (or from before them)
    uses what its pipeline always did."""
    return (mechanisms or {}).get(name, True)


def switched_off(mechanisms: dict[str, bool] | None) -> list[str]:
    return [name for name, on in (mechanisms or {}).items() if not on]
