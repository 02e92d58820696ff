"""Audio-Reasoner: a Qwen2-Audio fine-tune that thinks aloud in a fixed structure,

    <THINK><PLANNING>..</PLANNING><CAPTION>..</CAPTION><REASONING>..</REASONING>
    <SUMMARY>..</SUMMARY></THINK><RESPONSE>..</RESPONSE>

Its caption and its response are the evidence the other agents need; the planning and
reasoning are kept available through `parse_audio_reasoner_output` for the `direct` pipeline.
"""

import re
from dataclasses import dataclass

from workers.method.perception.alm.qwen2_audio import Qwen2AudioModel

# The format the model was fine-tuned to produce, restated so it keeps to it on any prompt.
AUDIO_REASONER_SYSTEM_PROMPT = (
    "You are an audio reasoning model. Think first, inside <THINK></THINK>, in four parts: "
    "<PLANNING> how you will answer, <CAPTION> what you hear in the audio, <REASONING> your "
    "step-by-step reasoning, and <SUMMARY> a short summary. Then give your final answer inside "
    "<RESPONSE></RESPONSE>."
)

_SECTIONS = ("planning", "caption", "reasoning", "summary", "response")
# Every tag of the format, opening or closing; a section runs to whichever tag comes next, so an
# unclosed section (a reply cut by max_new_tokens, a sloppy model) still ends in the right place.
_TAG = re.compile(r"<\s*(/?)\s*(think|planning|caption|reasoning|summary|response)\s*>", re.IGNORECASE)


@dataclass(frozen=True)
class ReasonerOutput:
    planning: str = ""
    caption: str = ""
    reasoning: str = ""
    summary: str = ""
    response: str = ""

    @property
    def evidence_text(self) -> str:
        """The caption and the answer; the summary stands in for an answer the reply never reached."""
        answer = self.response or self.summary
        if not self.caption:
            return answer
        return f"Caption: {self.caption}\nResponse: {answer}" if answer else f"Caption: {self.caption}"


def parse_audio_reasoner_output(text: str) -> ReasonerOutput:
    """Split a reply into its sections by tag. Missing tags leave their section empty; a reply
    with no tags at all is taken whole as the response."""
    tags = list(_TAG.finditer(text))
    if not tags:
        return ReasonerOutput(response=text.strip())
    sections: dict[str, str] = {}
    for i, tag in enumerate(tags):
        name = tag.group(2).lower()
        if tag.group(1) or name == "think" or sections.get(name):
            continue  # closing tags and <THINK> only delimit; the first non-empty copy of a section wins
        end = tags[i + 1].start() if i + 1 < len(tags) else len(text)
        sections[name] = text[tag.end() : end].strip()
    if not sections.get("response"):
        # Some replies give the answer after </THINK> without a <RESPONSE> tag.
        after_think = [t for t in tags if t.group(1) and t.group(2).lower() == "think"]
        if after_think and after_think[-1] is tags[-1]:
            sections["response"] = text[after_think[-1].end() :].strip()
    return ReasonerOutput(**{name: sections.get(name, "") for name in _SECTIONS})


class AudioReasonerModel(Qwen2AudioModel):
    family = "audio_reasoner"
    system_prompt = AUDIO_REASONER_SYSTEM_PROMPT

    @classmethod
    def evidence(cls, text: str) -> str:
        parsed = parse_audio_reasoner_output(text)
        # A reply with sections but neither caption nor answer (cut off while planning) is still
        # all the model said: keep it rather than return nothing.
        return parsed.evidence_text or _TAG.sub(" ", text).strip()
