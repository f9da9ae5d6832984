"""What ``MiniMaxTextInferenceOperator`` carries from one answer to the next (re-asks, deferrals):
its checked knobs, what the answers spent, and what a resume after a deferral needs."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator

from airflow_provider_minimax.models import TaskResult, refuse_bool
from airflow_provider_minimax.poll_cadence import WaitOptions
from airflow_provider_minimax.results import Usage, task_usage
from airflow_provider_minimax.structured import OutputRetries


class TextInferenceOptions(WaitOptions):
    """The operator's knobs (each named like its parameter) after templating, checked before any HTTP call."""

    delivery: Literal["async", "sync"]
    number_results: int = Field(ge=1, le=4)
    max_output_retries: OutputRetries
    include_cost: bool
    include_usage: bool

    _counts = field_validator("number_results", mode="before")(refuse_bool)


class Spent(BaseModel):
    """Tokens, cost and taskUUIDs of every answer this task instance used, re-asks included."""

    usage: Usage = Field(default_factory=Usage)
    cost: float | None = None
    task_uuids: list[str] = Field(default_factory=list)

    def add(self, results: list[TaskResult]) -> Spent:
        """This spend plus one answer's results (each taskUUID counted once).

        :param results: the answer's results.
        """
        cost = self.cost
        for item in results:
            if item.cost is not None:
                cost = (cost or 0.0) + item.cost
        uuids = [*self.task_uuids, *dict.fromkeys(item.task_uuid for item in results)]
        usage = sum((task_usage(item) for item in results), self.usage)
        return Spent(usage=usage, cost=cost, task_uuids=uuids)


class AnswerDeferralState(BaseModel):
    """What a resume needs from its deferral: the deferral's kwargs, also kept in the task-state store.

    :param attempt: which answer is awaited (0, then 1, 2... for structured-output re-asks).
    :param end_time: the epoch deadline fixed at the try's first deferral.
    :param spent: usage and cost of the answers before this one.
    """

    attempt: int = Field(ge=0)
    end_time: float
    spent: Spent = Field(default_factory=Spent)
