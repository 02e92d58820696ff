"""One agent turn: ask the reasoner for JSON, store the exchange, reuse it on replay.

The stored row is keyed by (job, iteration, agent, prompt hash); the hash covers the
model, the messages and the schema, so a replayed step that builds the same prompt reads
the stored reply and pays nothing, while a different reasoner model asks afresh.
If the reply is not valid JSON for the schema, the agent is asked once to repair it.

A reply is paid for before it is stored, so it is stored whatever it holds: the raw text
and everything read from it are first made into values Postgres takes (models/storable.py:
NUL, lone surrogates, NaN, runaway nesting, a server's 250-character model name). A
refused insert would lose the reply, and the step's retry would buy it again.
"""

import hashlib
import json
from dataclasses import dataclass
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

from core.database_outage import through_outage
from models import LLMCall
from models.db import session_scope
from models.storable import clipped, storable_int, storable_json, storable_text
from workers.method.paid_work import confirm_still_owned
from workers.method.reasoning.json_reply import parse_json_object, schema_errors
from workers.method.reasoning.llm_client import reasoner_client

REPAIR_REQUEST = (
    "Your reply was not a JSON object matching the required schema ({problem}). "
    "Reply again with only the JSON object."
)


@dataclass(frozen=True)
class AgentReply:
    parsed: dict | None  # the JSON object of the last reply, if one could be read
    valid: bool  # whether `parsed` satisfies the schema
    text: str  # the last raw reply

    @property
    def valid_json(self) -> dict | None:
        return self.parsed if self.valid else None


def ask_agent(job_id: UUID, iteration: int, agent: str, messages: list[dict], schema: dict,
              temperature: float | None = None) -> AgentReply:
    """`agent` names the stored exchange: samples of one agent are stored apart by their
    names ("answerer", "answerer#2", ...); `temperature`: this call's, else the setting's."""
    reply = _exchange(job_id, iteration, agent, messages, schema, temperature)
    problem = _problem(reply.parsed, schema)
    if problem is None:
        return AgentReply(reply.parsed, True, reply.reply)
    repair = messages + [
        {"role": "assistant", "content": reply.reply},
        {"role": "user", "content": REPAIR_REQUEST.format(problem=problem)},
    ]
    second = _exchange(job_id, iteration, agent, repair, schema, temperature)
    return AgentReply(second.parsed, _problem(second.parsed, schema) is None, second.reply)


def _problem(parsed: dict | None, schema: dict) -> str | None:
    if parsed is None:
        return "no JSON object found"
    return schema_errors(parsed, schema)


def prompt_hash(model: str, messages: list[dict], schema: dict) -> str:
    blob = json.dumps({"model": model, "messages": messages, "schema": schema}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _exchange(job_id, iteration, agent, messages, schema, temperature=None) -> LLMCall:
    client = reasoner_client()
    key = dict(job_id=job_id, iteration=iteration, agent=agent,
               prompt_hash=prompt_hash(client.settings.llm_model, messages, schema))
    stored = _stored(key)
    if stored is not None:
        return stored
    confirm_still_owned()  # never pay for a reply on behalf of a step another worker owns now
    completion = client.complete_json(messages, schema, name=agent.split("#")[0], temperature=temperature)
    # Committed now, and through a database outage: a crash later must not pay again.
    inserted = through_outage(lambda: _store(key, messages, completion), f"storing a {agent} reply")
    if inserted is not None:
        return inserted
    # None: a concurrent execution stored its reply first; that one is the record.
    record = _stored(key)
    assert record is not None  # the insert conflicted on this key: a row with it is stored
    return record


def storable_call(text: str, model: str, messages: list[dict]) -> dict:
    """The columns of a stored exchange, every one a value Postgres takes. The parsed object
    is read from the storable text, so a replay (which reads the row) sees what this
    execution saw."""
    reply = storable_text(text)
    return {"reply": reply, "model": clipped(model, MODEL_NAME_LENGTH), "messages": storable_json(messages),
            "parsed": storable_json(parse_json_object(reply))}


MODEL_NAME_LENGTH = LLMCall.__table__.c.model.type.length  # type: ignore[attr-defined]  # a String(n) column's type


def _store(key: dict, messages: list[dict], completion) -> LLMCall | None:
    with session_scope() as session:
        return session.scalar(
            insert(LLMCall)
            .values(
                **key, **storable_call(completion.text, completion.model, messages),
                prompt_tokens=storable_int(completion.prompt_tokens),
                completion_tokens=storable_int(completion.completion_tokens),
                latency_ms=completion.latency_ms,
            )
            .on_conflict_do_nothing(index_elements=list(key))
            .returning(LLMCall)
        )


def _stored(key: dict) -> LLMCall | None:
    with session_scope() as session:
        return session.scalar(select(LLMCall).filter_by(**key))
