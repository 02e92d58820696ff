"""crosscheck's final listening: once the loop ends, the primary audio model hears the clip
again and answers, given a neutral summary of the evidence (Audio-Mind keeps the audio
model in the final decision). Planned by whichever step ends the loop: the planner's
final verdict, or the interaction agent finding nothing more to ask for. The answer step
then weighs it against the text side (workers/method/steps/answer.py)."""

from workers.method.perception.agreement import is_final_listening
from workers.method.perception.evidence import neutral_summary
from workers.method.perception.tools.alm_tools import ANSWER_KIND


def calls(job, evidence: list[dict], tools) -> tuple:
    """The final-listening call, or () where there is none: another pipeline, the mechanism
    off, no audio model in the job's catalogue, or an open question (no choice to name)."""
    if not (job.pipeline.hears_again_to_answer and job.choices and tools.tool(ANSWER_KIND)):
        return ()
    args = {"question": job.question, "choices": list(job.choices), "evidence": neutral_summary(evidence)}
    return (tools.call(ANSWER_KIND, args),)


def is_final_round(calls) -> bool:
    """Whether a round is the final listening: its calls are all final-listening calls."""
    return bool(calls) and all(is_final_listening(c.tool, c.args) for c in calls)
