"""The OpenLineage facet classes; imported only when ``apache-airflow-providers-openlineage`` is."""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.providers.common.compat.openlineage.facet import Dataset, RunFacet
from airflow.providers.openlineage.extractors import OperatorLineage
from attrs import define

from airflow_provider_minimax.batch.io import storage_path

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow.providers.common.compat.sdk import ObjectStoragePath

    from airflow_provider_minimax.results import Spend

#: The run facet's key in ``run.facets``.
FACET_NAME = "minimax"
#: Past this many taskUUIDs the facet carries only their count (a batch may have thousands).
MAX_TASK_UUIDS = 100
#: The facet's JSON schema ships in the package as ``schemas/MiniMaxRunFacet.json`` (its ``$id``).
SCHEMA_URL = "https://www.minimax.io/schemas/openlineage/MiniMaxRunFacet.json#/$defs/MiniMaxRunFacet"


@define
class MiniMaxRunFacet(RunFacet):
    """What a MiniMax task spent: model, API, host, calls, tokens by kind, cost, taskUUIDs.

    :param api: ``task`` or ``chat``.
    :param model: the model asked.
    :param host: the API's host (never the key).
    :param calls: model calls made (rows, for a batch).
    :param usage: tokens by kind (a counter the API did not send is None).
    :param cost: USD, None when unknown.
    :param costEstimated: whether ``cost`` came from the connection's prices, not the API.
    :param taskUUIDs: the task API's taskUUIDs, None past :data:`MAX_TASK_UUIDS`.
    :param taskUUIDCount: how many taskUUIDs there were.
    :param promptTemplateHash: SHA-256 of the rendered prompt template, not the prompt.
    """

    # camelCase fields, as OpenLineage facets spell them.

    api: str
    model: str | None
    host: str
    calls: int
    usage: dict[str, int | None]
    cost: float | None
    costEstimated: bool
    taskUUIDs: list[str] | None
    taskUUIDCount: int
    promptTemplateHash: str | None

    @staticmethod
    def _get_schema() -> str:
        return SCHEMA_URL


def dataset(path: str | ObjectStoragePath) -> Dataset:
    """An OpenLineage dataset for a file: namespace ``s3://bucket`` (``file`` locally), name the key.

    :param path: a local path, URI or ``ObjectStoragePath``.
    """
    where = storage_path(path)
    name = where.key if where.protocol != "file" else "/" + where.key.lstrip("/")
    return Dataset(namespace=where.namespace, name=name)


def run_facet(spend: Spend) -> MiniMaxRunFacet:
    """The run facet of a task's spend.

    :param spend: what the task did.
    """
    uuids = spend.task_uuids
    return MiniMaxRunFacet(
        api=spend.api,
        model=spend.model,
        host=spend.host,
        calls=spend.calls,
        usage=spend.usage.model_dump(),
        cost=spend.cost,
        costEstimated=spend.cost_estimated,
        taskUUIDs=list(uuids) if len(uuids) <= MAX_TASK_UUIDS else None,
        taskUUIDCount=len(uuids),
        promptTemplateHash=spend.prompt_hash,
    )


def operator_lineage(
    spend: Spend | None,
    inputs: Sequence[str | ObjectStoragePath],
    outputs: Sequence[str | ObjectStoragePath],
) -> OperatorLineage:
    """The task's lineage: the run facet (when it got as far as the API) and its files.

    :param spend: what the task did; None when it failed before resolving its connection.
    :param inputs: files read.
    :param outputs: files written.
    """
    return OperatorLineage(
        inputs=[dataset(path) for path in inputs],
        outputs=[dataset(path) for path in outputs],
        run_facets={FACET_NAME: run_facet(spend)} if spend is not None else {},
    )
