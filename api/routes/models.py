"""GET /v1/models: the pipelines a chat completion or a Batch API line may name as its
`model` (workers/method/pipelines.py), and the operator's aliases (AGR_MODEL_ALIASES)."""

from fastapi import APIRouter

from api.deps import CallerDep
from api.intake.chat_request import pipeline_of
from core.settings import get_settings

router = APIRouter(prefix="/v1/models", tags=["openai"])
CREATED = 1764547200  # when these pipelines were first served (2025-12-01): the field is required
DESCRIPTIONS = {"agr": "AudioGenie-Reasoner: coarse document, planner/interaction loop, answerer",
                "cascade": "coarse document, then the answerer (no refinement loop)",
                "direct": "one audio-language-model call answers (needs AGR_ALM_MODEL)",
                "crosscheck": "beyond AGR (being built): the agr loop over a coarse document of every cheap tool"}


@router.get("")
def list_models(caller: CallerDep) -> dict:
    names = [*DESCRIPTIONS, *get_settings().model_aliases]
    return {"object": "list", "data": [_model(name) for name in names]}


@router.get("/{model:path}", responses={404: {"description": "no such model"}})
def read(model: str, caller: CallerDep) -> dict:
    pipeline_of(model)  # 404 model_not_found
    return _model(model)


def _model(name: str) -> dict:
    pipeline = pipeline_of(name)
    return {"id": name, "object": "model", "created": CREATED, "owned_by": "audiogenie-queue",
            "pipeline": pipeline, "description": DESCRIPTIONS[pipeline]}
