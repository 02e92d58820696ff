"""What one question may be, however it was sent (a batch line, a chat completion): the
checks raise ValueError with the reason, which each reader words as its own refusal."""

MAX_QUESTION_CHARS = 20_000
MAX_CHOICES = 26


def question(value) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("question must be a non-empty string")
    if len(value) > MAX_QUESTION_CHARS:
        raise ValueError(f"question longer than {MAX_QUESTION_CHARS} characters")
    return value


def choices(value) -> list[str]:
    found = value or []
    if not isinstance(found, list) or not all(isinstance(c, str) and c.strip() for c in found):
        raise ValueError("choices must be a list of non-empty strings")
    if len(found) > MAX_CHOICES:
        raise ValueError(f"at most {MAX_CHOICES} choices")
    # MMAU test-mini repeats a choice in 27 items; a repeat adds nothing, so it is dropped.
    return list(dict.fromkeys(found))
