"""Reading the question and its choices back out of the prompts harnesses send."""

import pytest

from api.intake.prompt_choices import parse_prompt

MMAR_LMMS_EVAL = ("Listen to the audio and answer the following multiple-choice question. Respond with only the "
                  "letter (A, B, C, or D) of the correct option.\nWhat instrument plays first?\nA. Piano\n"
                  "B. Violin\nC. Drums\nD. Flute\nThe best answer is:")
MMAU_LMMS_EVAL = "Which sound is heard?\nA. Dog bark\nB. Car horn\nAnswer with the option's letter from the given " \
                 "choices directly."


@pytest.mark.parametrize("text, question, choices, instruction", [
    (MMAR_LMMS_EVAL, MMAR_LMMS_EVAL.split("\nA.")[0], ["Piano", "Violin", "Drums", "Flute"], "The best answer is:"),
    (MMAU_LMMS_EVAL, "Which sound is heard?", ["Dog bark", "Car horn"],
     "Answer with the option's letter from the given choices directly."),
    ("What is heard?\n(A) A tone\n(B) A voice", "What is heard?", ["A tone", "A voice"], ""),
    ("What is heard?\na) a tone\nb) a voice\nc) silence", "What is heard?", ["a tone", "a voice", "silence"], ""),
    ("Which? (A) piano (B) violin (C) drums. Answer with the letter.", "Which?", ["piano", "violin", "drums"],
     "Answer with the letter."),
    ("Which?\nChoices:\n(A) x\n(B) y", "Which?", ["x", "y"], ""),
    ("Which?\nOptions:\n- one\n- two\n\nReply with the text.", "Which?", ["one", "two"], "Reply with the text."),
    ("Which?\nChoices: ['left, then right', 'right']", "Which?", ["left, then right", "right"], ""),
    ("Which colour?\nchoices: red, green, blue", "Which colour?", ["red", "green", "blue"], ""),
    ("Choices: red; green\nWhich colour?", "Which colour?", ["red", "green"], ""),
    ("What is said in the clip?", "What is said in the clip?", [], ""),
    ("Is it A. or B.? Tell me what A. means.", "Is it A. or B.? Tell me what A. means.", [], ""),
    ("Steps:\nA. listen\nC. answer", "Steps:\nA. listen\nC. answer", [], ""),  # not A, B, ...: not choices
])
def test_layouts(text, question, choices, instruction):
    parsed = parse_prompt(text)
    assert (parsed.question, parsed.choices, parsed.instruction) == (question, choices, instruction)
