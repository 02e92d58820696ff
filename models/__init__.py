"""Database models: the persisted state of batches, jobs and every step of their reasoning."""

from models.audio import AudioAsset, AudioDeletion, AudioGrant
from models.base import Base
from models.batch import Batch
from models.input_file import InputFile
from models.iteration import Iteration
from models.job import Job
from models.llm_call import LLMCall
from models.status import BatchStatus, JobStatus, StepKind, StepStatus
from models.step import Step
from models.step_attempt import StepAttempt
from models.tenant import ApiKey, Tenant
from models.tool_call import ToolCall
from models.tool_catalogue import ToolCatalogue
from models.upload import Upload

__all__ = [
    "ApiKey", "AudioAsset", "AudioDeletion", "AudioGrant", "Base", "Batch", "BatchStatus", "InputFile", "Iteration", "Job", "JobStatus",
    "LLMCall", "Step", "StepAttempt", "StepKind", "StepStatus", "Tenant", "ToolCall", "ToolCatalogue", "Upload",
]
