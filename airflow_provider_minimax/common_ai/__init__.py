"""MiniMax as a first-class model of ``apache-airflow-providers-common-ai`` (pydantic-ai underneath).

Needs the ``common-ai`` extra: ``pip install 'airflow-provider-minimax[common-ai]'``. Without it,
importing this package raises :class:`AirflowOptionalProviderFeatureException`, which Airflow's
provider manager treats as an optional feature being off rather than as a broken provider.
"""

from __future__ import annotations

from airflow.providers.common.compat.sdk import AirflowOptionalProviderFeatureException

EXTRA = "common-ai"

try:
    import pydantic_ai  # noqa: F401
    from airflow.providers.common.ai.hooks.pydantic_ai import PydanticAIHook  # noqa: F401
    from pydantic_ai.models.openai import OpenAIChatModel  # noqa: F401
except ImportError as err:
    raise AirflowOptionalProviderFeatureException(
        f"MiniMax for common.ai needs the {EXTRA!r} extra ({err.name or err} is missing): "
        f"pip install 'airflow-provider-minimax[{EXTRA}]'"
    ) from err
