"""What a MiniMax task reports to OpenLineage: model, API, host, calls, tokens, cost, taskUUIDs.

``apache-airflow-providers-openlineage`` is optional: without it the operators import and run
as usual and report nothing. With it, every operator returns an ``OperatorLineage`` holding a
``minimax`` run facet (see :mod:`.lineage_facets`) when it completes and when it fails (so
what a failed task already paid for is on record too); the batch operator adds its input and
output files as datasets. The prompt is never reported, only a hash of its rendered template.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import ObjectStoragePath

    from airflow_provider_minimax.results import Spend


def prompt_hash(*parts: Any) -> str:
    """A SHA-256 of the rendered prompt template (system prompt, prompt or messages), never the text.

    :param parts: the rendered template fields, JSON-serialisable.
    """
    body = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return "sha256:" + hashlib.sha256(body.encode()).hexdigest()


class LineageMixin:
    """OpenLineage methods for an operator that keeps its :class:`~..results.Spend` in ``minimax_spend``."""

    #: Set by ``execute`` (and kept up to date while it runs); None before.
    minimax_spend: Spend | None = None

    def lineage_spend(self) -> Spend | None:
        """What the task spent, for its run facet."""
        return self.minimax_spend

    def lineage_datasets(self) -> tuple[list[str | ObjectStoragePath], list[str | ObjectStoragePath]]:
        """The files the task read and wrote: (inputs, outputs)."""
        return [], []

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """The ``minimax`` run facet and datasets; None without the OpenLineage provider.

        :param task_instance: the finished task instance (unused: the operator kept its spend).
        """
        return self._operator_lineage()

    def get_openlineage_facets_on_failure(self, task_instance: Any) -> Any:
        """As on completion: what a failed task already paid for belongs in the lineage too.

        :param task_instance: the failed task instance.
        """
        return self._operator_lineage()

    def _operator_lineage(self) -> Any:
        try:
            from airflow_provider_minimax.lineage_facets import operator_lineage
        except ImportError:  # apache-airflow-providers-openlineage is not installed.
            return None
        inputs, outputs = self.lineage_datasets()
        return operator_lineage(self.lineage_spend(), inputs, outputs)
